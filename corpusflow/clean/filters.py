"""Document quality filters, as plug-ins.

A filter is a function ``f(text, cfg) -> (keep, reason)``: ``reason`` is None
when the document is kept and the filter's name when not. Its thresholds live
in a small ``Config`` dataclass (``cfg``); their command-line options are
generated from its fields (see ``corpusflow.config``). ``FILTERS`` registers
every filter with its config class; they run in list order (cheapest and most
basic first) and the first failure wins.

They run on the *normalised* text, except filters registered with
``raw=True`` (``bad_encoding``), which see the text before normalisation: the
U+FFFD characters it counts are deleted by normalisation.

Adding a filter: write its config class (if it has thresholds) and its
function here, add one ``Filter(...)`` line to ``FILTERS``, and test it. Its
reject reason and counter (``clean:filtered:<name>``) are the function's name.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, ClassVar, Mapping, Optional

from corpusflow.clean.normalize import CJK_IDEOGRAPHS
from corpusflow.config import Config, ConfigError, option
from corpusflow.counters import register

FilterResult = tuple[bool, Optional[str]]

#: ``--help`` group of every cleaning option.
GROUP = "corpusflow: cleaning (stage clean)"

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


def repeated_line_ratio(text: str) -> float:
    """Share of non-empty lines that repeat an earlier line of the same text."""
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 2:
        return 0.0
    return (len(lines) - len(set(lines))) / len(lines)


# ------------------------------------------------------------- thresholds
@dataclasses.dataclass(frozen=True)
class EncodingConfig(Config):
    """``bad_encoding``: not a command-line option (fixed at 1%)."""

    GROUP: ClassVar[str] = GROUP
    max_replacement_ratio: float = 0.01   # U+FFFD / chars of the raw text


@dataclasses.dataclass(frozen=True)
class LengthConfig(Config):
    """``too_short`` and ``too_long``."""

    GROUP: ClassVar[str] = GROUP
    min_chars: int = option(20, "Documents with fewer non-space characters are filtered.", lo=0)
    max_chars: int = option(1_000_000, "Documents with more characters are filtered.")

    def check(self) -> None:
        if self.max_chars < max(1, self.min_chars):
            raise ConfigError(f"--max_chars must be >= --min_chars ({self.min_chars}) and >= 1, "
                              f"got {self.max_chars}")


@dataclasses.dataclass(frozen=True)
class CjkConfig(Config):
    """``low_cjk``."""

    GROUP: ClassVar[str] = GROUP
    min_cjk_ratio: float = option(
        0.3, "Documents with a smaller share of CJK characters are filtered (0..1).", lo=0, hi=1)


@dataclasses.dataclass(frozen=True)
class RepeatedLinesConfig(Config):
    """``repeated_lines``."""

    GROUP: ClassVar[str] = GROUP
    max_repeated_line_ratio: float = option(
        0.3, "Documents with a larger share of repeated lines are filtered (0..1).", lo=0, hi=1)


# ---------------------------------------------------------------- filters
def bad_encoding(raw_text: str, cfg: EncodingConfig = EncodingConfig()) -> FilterResult:
    """Reject a raw text where more than ``max_replacement_ratio`` of the
    characters are U+FFFD: it was decoded with the wrong codec as a whole."""
    n = raw_text.count("\ufffd")
    if n and n > cfg.max_replacement_ratio * len(raw_text):
        return False, "bad_encoding"
    return KEEP


def empty_after_clean(text: str, cfg: None = None) -> FilterResult:
    """Reject a text with nothing but whitespace left."""
    if non_space_chars(text) == 0:
        return False, "empty_after_clean"
    return KEEP


def too_short(text: str, cfg: LengthConfig = LengthConfig()) -> FilterResult:
    """Reject a text with fewer than ``min_chars`` non-whitespace characters."""
    if non_space_chars(text) < cfg.min_chars:
        return False, "too_short"
    return KEEP


def too_long(text: str, cfg: LengthConfig = LengthConfig()) -> FilterResult:
    """Reject a text longer than ``max_chars`` characters (a dump, not a document)."""
    if len(text) > cfg.max_chars:
        return False, "too_long"
    return KEEP


def low_cjk(text: str, cfg: CjkConfig = CjkConfig()) -> FilterResult:
    """Reject a text whose share of CJK ideographs among non-whitespace
    characters is below ``min_cjk_ratio`` (English pages, code, number tables)."""
    total = non_space_chars(text)
    if total == 0 or cjk_chars(text) < cfg.min_cjk_ratio * total:
        return False, "low_cjk"
    return KEEP


def repeated_lines(text: str, cfg: RepeatedLinesConfig = RepeatedLinesConfig()) -> FilterResult:
    """Reject a text (of 2+ lines) where more than ``max_repeated_line_ratio`` of
    the lines are duplicates of other lines in it (menus, boilerplate, spam;
    Gopher's duplicate-line filter)."""
    if "\n" in text and repeated_line_ratio(text) > cfg.max_repeated_line_ratio:
        return False, "repeated_lines"
    return KEEP


# --------------------------------------------------------------- registry
@dataclasses.dataclass(frozen=True)
class Filter:
    """One registered filter: its function, the config class of its
    thresholds (None: none) and whether it sees the raw text."""

    fn: Callable[[str, Any], FilterResult]
    config: Optional[type] = None
    raw: bool = False

    @property
    def reason(self) -> str:
        """The reject reason and counter suffix: the function's name."""
        return self.fn.__name__

    def __post_init__(self) -> None:
        register([f"clean:filtered:{self.reason}"])


#: Every filter, in the order they run.
FILTERS: tuple[Filter, ...] = (
    Filter(bad_encoding, EncodingConfig, raw=True),
    Filter(empty_after_clean),
    Filter(too_short, LengthConfig),
    Filter(too_long, LengthConfig),
    Filter(low_cjk, CjkConfig),
    Filter(repeated_lines, RepeatedLinesConfig),
)

#: The built-in filters' reasons, in order (``FILTERS`` is the source).
FILTER_REASONS: tuple[str, ...] = tuple(f.reason for f in FILTERS)


def config_classes(registry: Optional[tuple[Filter, ...]] = None) -> tuple[type, ...]:
    """The distinct config classes of the registered filters, in filter order."""
    out: list[type] = []
    for f in FILTERS if registry is None else registry:
        if f.config is not None and f.config not in out:
            out.append(f.config)
    return tuple(out)


def filter_configs(opts: "Mapping[str, Any] | Any" = None) -> tuple[Config, ...]:
    """One config per class of ``config_classes()``, from parsed options (a
    mapping or an object with attributes; missing options take defaults)."""
    return tuple(cls.from_options(opts if opts is not None else {})
                 for cls in config_classes())


Plan = tuple[tuple[Callable[[str, Any], FilterResult], Any, bool], ...]


def plan(configs: tuple[Config, ...] = ()) -> Plan:
    """``(fn, cfg, raw)`` per registered filter, in order: ``configs`` holds
    the thresholds (one instance per config class; a class not given takes its
    defaults). Resolved once per cleaner, not per document."""
    by_class = {type(c): c for c in configs}
    out = []
    for f in FILTERS:
        cfg = None
        if f.config is not None:
            cfg = by_class.get(f.config)
            if cfg is None:
                cfg = by_class[f.config] = f.config()
        out.append((f.fn, cfg, f.raw))
    return tuple(out)


def run_plan(steps: Plan, text: str, raw_text: Optional[str] = None) -> FilterResult:
    """Run the filters of ``plan()`` in order; the first failure wins.

    ``raw_text`` (the text before normalisation) feeds the ``raw`` filters;
    without it they are skipped.
    """
    # One at a time, in order: later filters cost more and need not run.
    for fn, cfg, raw in steps:
        if raw:
            if raw_text is None:
                continue
            r = fn(raw_text, cfg)
        else:
            r = fn(text, cfg)
        if not r[0]:
            return r
    return KEEP


def apply_filters(text: str, raw_text: Optional[str] = None,
                  configs: tuple[Config, ...] = ()) -> FilterResult:
    """``run_plan(plan(configs), text, raw_text)``: every filter, in order."""
    return run_plan(plan(configs), text, raw_text)
