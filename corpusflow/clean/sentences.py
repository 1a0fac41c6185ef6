"""Split Chinese text into sentences.

Boundaries: every newline; after a run of Chinese terminators 。！？；… (any mix,
e.g. "……", "！？", "。。。"); after a run of ASCII ``! ? ;`` only when what follows
(after optional spaces) is a non-ASCII character or the end, so "Yahoo! Inc",
"a;b" and "(2005; Shute)" stay whole. ASCII "." never splits ("3.5", "e.g.",
"U.S."). Closing quotes and brackets right after a terminator stay with the
sentence they close (``他说：“好。”`` is one sentence). Sentences are stripped
of surrounding spaces; empty ones are never returned. A sentence longer than
``max_chars`` is cut after the last comma-like character (，、,) within the
limit, else hard-cut at the limit.
"""

from __future__ import annotations

import re

DEFAULT_MAX_CHARS = 500

_CN_TERMINATORS = "。！？；…"
_ASCII_TERMINATORS = "!?;"
# Closers that belong to the sentence they follow. ASCII quotes are included:
# after a terminator in Chinese text a '"' almost always closes a quotation.
CLOSERS = "”’」』）)】》〉\"'"
_END_RE = re.compile(
    f"[{re.escape(_CN_TERMINATORS + _ASCII_TERMINATORS)}]+[{re.escape(CLOSERS)}]*")
_COMMA_CHARS = "，、,"


def _split_line(line: str, out: list[str]) -> None:
    start = 0
    n = len(line)
    for m in _END_RE.finditer(line):
        end = m.end()
        run = m.group().rstrip(CLOSERS)
        if run.isascii():
            # ASCII "!?;" ends a sentence only before non-ASCII text or the end.
            j = end
            while j < n and line[j].isspace():
                j += 1
            if j < n and line[j].isascii():
                continue
        piece = line[start:end].strip()
        if piece:
            out.append(piece)
        start = end
    if start < n:
        piece = line[start:].strip()
        if piece:
            out.append(piece)


def _cut_long(sentence: str, max_chars: int, out: list[str]) -> None:
    while len(sentence) > max_chars:
        window = sentence[:max_chars]
        cut = max(window.rfind(c) for c in _COMMA_CHARS) + 1
        if cut <= 0:
            cut = max_chars
        head = sentence[:cut].strip()
        if head:
            out.append(head)
        sentence = sentence[cut:].lstrip()
    if sentence:
        out.append(sentence)


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Split ``text`` into non-empty sentences of at most ``max_chars`` characters."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    sentences: list[str] = []
    for line in text.split("\n"):
        if line:
            _split_line(line, sentences)
    if any(len(s) > max_chars for s in sentences):
        out: list[str] = []
        for s in sentences:
            if len(s) > max_chars:
                _cut_long(s, max_chars, out)
            else:
                out.append(s)
        return out
    return sentences
