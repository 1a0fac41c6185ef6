"""Document quality filters.

Each filter is a small function ``f(text, ...) -> (keep, reason)`` with
``reason`` None when the document is kept and one of ``FILTER_REASONS`` when
not. They run on the *normalised* text, except ``bad_encoding``, which must see
the U+FFFD characters normalisation deletes. ``apply_filters`` runs them in the
order of ``FILTER_REASONS`` (cheapest and most basic first) and returns the
first failure.
"""

from __future__ import annotations

import re
from typing import Optional

from corpusflow.clean.normalize import CJK_IDEOGRAPHS

FilterResult = tuple[bool, Optional[str]]

FILTER_REASONS: tuple[str, ...] = (
    "bad_encoding",
    "empty_after_clean",
    "too_short",
    "too_long",
    "low_cjk",
    "repeated_lines",
)

KEEP: FilterResult = (True, None)

# Whitespace that can be left in a text (normalised text has only " " and "\n";
# the others make the filters correct on raw text too).
_WHITESPACE = (" ", "\n", "\t", "\r", "\u3000", "\xa0")
# Runs, not single characters: summing run lengths allocates far fewer strings
# than findall over single ideographs.
_CJK_RUN_RE = re.compile(f"[{CJK_IDEOGRAPHS}]+")


def non_space_chars(text: str) -> int:
    """Number of characters that are not whitespace."""
    return len(text) - sum(text.count(c) for c in _WHITESPACE)


def cjk_chars(text: str) -> int:
    """Number of CJK ideographs (see ``normalize.CJK_IDEOGRAPHS``)."""
    return sum(map(len, _CJK_RUN_RE.findall(text)))


def bad_encoding(raw_text: str, max_replacement_ratio: float = 0.01) -> FilterResult:
    """Reject a raw text where more than ``max_replacement_ratio`` of the
    characters are U+FFFD: it was decoded with the wrong codec as a whole."""
    n = raw_text.count("\ufffd")
    if n and n > max_replacement_ratio * len(raw_text):
        return False, "bad_encoding"
    return KEEP


def empty_after_clean(text: str) -> FilterResult:
    """Reject a text with nothing but whitespace left."""
    if non_space_chars(text) == 0:
        return False, "empty_after_clean"
    return KEEP


def too_short(text: str, min_chars: int = 20) -> FilterResult:
    """Reject a text with fewer than ``min_chars`` non-whitespace characters."""
    if non_space_chars(text) < min_chars:
        return False, "too_short"
    return KEEP


def too_long(text: str, max_chars: int = 1_000_000) -> FilterResult:
    """Reject a text longer than ``max_chars`` characters (a dump, not a document)."""
    if len(text) > max_chars:
        return False, "too_long"
    return KEEP


def low_cjk(text: str, min_cjk_ratio: float = 0.3) -> FilterResult:
    """Reject a text whose share of CJK ideographs among non-whitespace
    characters is below ``min_cjk_ratio`` (English pages, code, number tables)."""
    total = non_space_chars(text)
    if total == 0 or cjk_chars(text) < min_cjk_ratio * total:
        return False, "low_cjk"
    return KEEP


def repeated_line_ratio(text: str) -> float:
    """Share of non-empty lines that repeat an earlier line of the same text."""
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 2:
        return 0.0
    return (len(lines) - len(set(lines))) / len(lines)


def repeated_lines(text: str, max_repeated_line_ratio: float = 0.3) -> FilterResult:
    """Reject a text (of 2+ lines) where more than ``max_repeated_line_ratio`` of
    the lines are duplicates of other lines in it (menus, boilerplate, spam;
    Gopher's duplicate-line filter)."""
    if "\n" in text and repeated_line_ratio(text) > max_repeated_line_ratio:
        return False, "repeated_lines"
    return KEEP


def apply_filters(text: str, raw_text: Optional[str] = None, *, min_chars: int = 20,
                  max_chars: int = 1_000_000, min_cjk_ratio: float = 0.3,
                  max_repeated_line_ratio: float = 0.3,
                  max_replacement_ratio: float = 0.01) -> FilterResult:
    """Run all filters in ``FILTER_REASONS`` order; the first failure wins.

    ``raw_text`` (the text before normalisation) feeds ``bad_encoding``; without
    it that filter is skipped.
    """
    if raw_text is not None:
        r = bad_encoding(raw_text, max_replacement_ratio)
        if not r[0]:
            return r
    # One at a time, in order: later filters cost more and need not run.
    r = empty_after_clean(text)
    if not r[0]:
        return r
    r = too_short(text, min_chars)
    if not r[0]:
        return r
    r = too_long(text, max_chars)
    if not r[0]:
        return r
    r = low_cjk(text, min_cjk_ratio)
    if not r[0]:
        return r
    return repeated_lines(text, max_repeated_line_ratio)
