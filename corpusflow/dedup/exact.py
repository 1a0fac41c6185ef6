"""Exact deduplication keys: whole documents and single lines.

Texts are compared after ``comparison_form``: case-folded, with all whitespace,
punctuation and control characters removed. Reposts that differ only in spacing,
line breaks, punctuation or letter case ("中国，你好！" / "中国, 你好" /
"中国你好") are then *exact* duplicates, while any difference in the words
themselves keeps them apart (that is near-duplicate dedup's job).

Keys are ``stable_hash64`` of the UTF-8 comparison form: the same in every
process and worker. The character classes come from ``unicodedata`` (Unicode
categories P*, Z*, Cc, Cf and whitespace, Basic Multilingual Plane); a Python
upgrade with a newer Unicode version can in principle move a rare character in
or out, so compare keys from one Python version only.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable

from corpusflow.document import stable_hash64

DEFAULT_MIN_LINE_CHARS = 10


def _ignored_chars() -> str:
    out = []
    for c in range(0x10000):
        ch = chr(c)
        cat = unicodedata.category(ch)
        if cat[0] in "PZ" or cat in ("Cc", "Cf") or ch.isspace():
            out.append(ch)
    return "".join(out)


# One character class: re.sub over it runs in C and, unlike str.translate with a
# dict, does no per-character dictionary lookup.
_IGNORED_RE = re.compile("[" + re.escape(_ignored_chars()) + "]+")


def comparison_form(text: str) -> str:
    """``text`` case-folded, without whitespace, punctuation or control/format chars."""
    return _IGNORED_RE.sub("", text).casefold()


def text_key(text: str) -> int:
    """A stable 64-bit key of a whole text's comparison form."""
    return stable_hash64(comparison_form(text))


def line_keys(text: str, min_chars: int = DEFAULT_MIN_LINE_CHARS) -> list[tuple[int, int]]:
    """``(line index, key)`` for each line of ``text`` (split on "\\n") whose
    comparison form has at least ``min_chars`` characters.

    Shorter lines get no key and are never removed as cross-document repeats:
    short lines ("图片来源：网络", "谢谢！") repeat legitimately far too often.
    """
    out = []
    for i, line in enumerate(text.split("\n")):
        form = comparison_form(line)
        if len(form) >= min_chars:
            out.append((i, stable_hash64(form)))
    return out


def text_and_line_keys(text: str, min_chars: int = DEFAULT_MIN_LINE_CHARS
                       ) -> tuple[int, list[tuple[int, int]]]:
    """``(text_key(text), line_keys(text, min_chars))`` from one pass.

    The text's comparison form is the concatenation of its lines' forms ("\\n"
    is removed, and case folding maps each character on its own), so the
    lines are normalised once and the text key comes from their join.
    """
    out = []
    forms = []
    for i, line in enumerate(text.split("\n")):
        form = comparison_form(line)
        forms.append(form)
        if len(form) >= min_chars:
            out.append((i, stable_hash64(form)))
    return stable_hash64("".join(forms)), out


def remove_lines(text: str, indices: Iterable[int]) -> str:
    """``text`` without the lines (0-based, split on "\\n") at ``indices``.

    Indices outside the text are ignored; the remaining lines keep their order.
    """
    drop = set(indices)
    if not drop:
        return text
    return "\n".join(line for i, line in enumerate(text.split("\n")) if i not in drop)
