"""BERT's text splitting, mirrored exactly, plus a fast way to count its words.

The vocab builder and the audit must see text the way the pipeline's WordPiece
tokenizer (Google BERT's ``FullTokenizer``) does: control (``C*``) characters
dropped, each CJK ideograph its own word, punctuation split off, lower-casing
with accent stripping, then greedy longest-match WordPiece with ``##``
continuations. This module is a self-contained copy of those rules so ``vocab/``
does not depend on the pipeline package; ``tests/test_vocab.py`` checks it
agrees with ``corpusflow.tokenize.wordpiece`` on real text. Like Google's code
and the pipeline's tokenizer, this splits words at U+2028/U+2029 (``str.split()``).

Tokenising a 1M-sentence sample character by character in Python is slow, so
``KeyCounter`` counts text in bulk as *keys*: characters that are always a word
of their own (CJK ideographs, punctuation) and maximal runs of everything else
between separators. BERT's result for a text is the concatenation of its result
for each key (those characters are always split off and separators only
separate), so the exact Python rules run once per distinct key instead of once
per character.
"""

from __future__ import annotations

import collections
import re
import unicodedata
from typing import Iterable, Mapping, Optional

# One definition of BERT's character classes, shared with the pipeline's
# tokenizer, so the vocab is built with exactly the rules that will read it.
from corpusflow.tokenize.wordpiece import (  # noqa: F401 - re-exported
    is_chinese_char,
    is_control,
    is_punctuation,
    is_whitespace,
)

UNK = "[UNK]"
MAX_CHARS_PER_WORD = 100  # Hugging Face's WordPiece default (and the pipeline's): longer words become [UNK]

# BERT's _is_chinese_char ranges (the CJK Unified Ideographs blocks and the
# compatibility ideographs). Kana, Hangul and CJK punctuation are not in them.
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def is_cjk(ch: str) -> bool:
    """True for characters BERT splits off as words of their own."""
    return is_chinese_char(ord(ch))


def _clean(text: str) -> str:
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or is_control(ch):
            continue
        out.append(" " if is_whitespace(ch) else ch)
    return "".join(out)


def _normalize(text: str) -> str:
    # Lower-case and strip accents one character at a time, as the pipeline's
    # tokenizer does (its one documented difference from BERT, which lower-cases
    # whole words: only Greek final sigma differs).
    return "".join(c for ch in text for c in unicodedata.normalize("NFD", ch.lower())
                   if unicodedata.category(c) != "Mn")


def _split_punctuation(text: str) -> list[str]:
    words: list[str] = []
    cur: list[str] = []
    for ch in text:
        if is_punctuation(ch):
            if cur:
                words.append("".join(cur))
                cur = []
            words.append(ch)
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


def basic_tokenize(text: str, do_lower_case: bool = True) -> list[str]:
    """BERT's BasicTokenizer: the words WordPiece then splits."""
    text = _clean(text)
    text = "".join(f" {c} " if is_cjk(c) else c for c in text)
    words: list[str] = []
    # str.split() as BERT does: after _clean it also splits on U+2028/U+2029.
    for tok in text.split():
        if do_lower_case:
            tok = _normalize(tok)
        words.extend(w for w in _split_punctuation(tok) if w)
    return words


def wordpiece_tokenize(word: str, vocab: Mapping[str, object] | set[str], unk: str = UNK,
                       max_chars: int = MAX_CHARS_PER_WORD) -> list[str]:
    """Greedy longest-match-first WordPiece of one basic-tokenizer word."""
    return wordpiece_with_failure(word, vocab, unk, max_chars)[0]


def wordpiece_with_failure(word: str, vocab: Mapping[str, object] | set[str], unk: str = UNK,
                           max_chars: int = MAX_CHARS_PER_WORD) -> tuple[list[str], int]:
    """WordPiece pieces and, for an [UNK] word, where greedy matching got stuck.

    The index is that of the first character no entry starts with (in the form
    its position needs: ``c`` first, ``##c`` after); -1 when the word was pieced
    and ``len(word)`` when it was too long to try.
    """
    if len(word) > max_chars:
        return [unk], len(word)
    pieces: list[str] = []
    start = 0
    while start < len(word):
        end = len(word)
        piece = None
        while start < end:
            sub = word[start:end] if start == 0 else "##" + word[start:end]
            if sub in vocab:
                piece = sub
                break
            end -= 1
        if piece is None:
            return [unk], start
        pieces.append(piece)
        start = end
    return pieces, -1


def _class(cps: Iterable[int]) -> str:
    """A regex character class body for code points (as ranges, escaped)."""
    out, cps = [], sorted(cps)
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        out.append(re.escape(chr(cps[i])) + ("-" + re.escape(chr(cps[j])) if j > i else ""))
        i = j + 1
    return "".join(out)


class _Tables:
    """Code point tables for KeyCounter, built once per process on first use."""

    def __init__(self) -> None:
        import numpy as np

        # Separators: BERT's whitespace, plus what str.split() splits on that
        # _clean keeps (U+2028, U+2029). All of them are in the BMP.
        seps = [cp for cp in range(0x10000)
                if is_whitespace(chr(cp)) or (chr(cp).isspace() and not is_control(chr(cp)))]
        # "Single" characters are always a word of their own whatever surrounds
        # them: CJK ideographs (BERT spaces them out before anything else) and
        # punctuation whose normalised form is all punctuation (it is split off
        # after normalisation; checked rather than assumed, per Unicode version).
        single = np.zeros(0x110000, dtype=bool)
        for lo, hi in CJK_RANGES:
            single[lo:hi + 1] = True
        for cp in range(0x110000):
            if not 0xD800 <= cp <= 0xDFFF and is_punctuation(chr(cp)):
                norm = _normalize(chr(cp))
                single[cp] = bool(norm) and all(is_punctuation(c) for c in norm)
        self.single = single
        self.run_re = re.compile(f"[^{_class(np.flatnonzero(single).tolist())}{_class(seps)}]+")


_tables: Optional[_Tables] = None


def _get_tables() -> _Tables:
    global _tables
    if _tables is None:
        _tables = _Tables()
    return _tables


class KeyCounter:
    """Counts text as keys; ``words()`` turns them into BERT basic-tokenizer words.

    Keys are "single" characters (CJK ideographs, punctuation), counted with
    numpy over UTF-32 code points, and maximal runs of other non-separator
    characters, counted with one regex ``findall``. Text is buffered and counted
    in ~1M-character chunks so per-call overhead stays small.
    """

    _CHUNK = 1 << 20

    def __init__(self) -> None:
        import numpy as np

        self._np = np
        self._tables = _get_tables()
        self._codes = np.zeros(0x110000, dtype=np.int64)
        self.runs: collections.Counter[str] = collections.Counter()
        self._pending: list[str] = []
        self._pending_chars = 0

    def add(self, text: str) -> None:
        self._pending.append(text)
        self._pending_chars += len(text)
        if self._pending_chars >= self._CHUNK:
            self._flush()

    def add_all(self, texts: Iterable[str]) -> None:
        for t in texts:
            self.add(t)

    def _flush(self) -> None:
        if not self._pending:
            return
        chunk = "\n".join(self._pending)  # "\n" separates, as between texts
        self._pending, self._pending_chars = [], 0
        np = self._np
        # surrogatepass: lone surrogates from JSON escapes are dropped by BERT
        # later (category Cs) but must not break the encoding here.
        cps = np.frombuffer(chunk.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        self._codes += np.bincount(cps, minlength=0x110000)
        self.runs.update(self._tables.run_re.findall(chunk))

    def keys(self) -> collections.Counter[str]:
        """Every key and its count."""
        self._flush()
        np = self._np
        singles = np.flatnonzero(self._tables.single & (self._codes > 0))
        keys: collections.Counter[str] = collections.Counter(
            {chr(cp): int(n) for cp, n in zip(singles.tolist(), self._codes[singles].tolist())})
        keys.update(self.runs)
        return keys

    def words(self, do_lower_case: bool = True) -> collections.Counter[str]:
        """Counts of BERT basic-tokenizer words over all text added."""
        words: collections.Counter[str] = collections.Counter()
        for key, n in self.keys().items():
            for w in basic_tokenize(key, do_lower_case):
                words[w] += n
        return words
