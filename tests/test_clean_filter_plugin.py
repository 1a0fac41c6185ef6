"""A filter is a plug-in: one function and its config class, registered in
``filters.FILTERS``; its option, hashing, counter and place in the order follow."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from corpusflow.clean import filters as F
from corpusflow.clean.cleaner import CleanConfig, Cleaner, clean_option_classes
from corpusflow.config import Config, ConfigError, add_groups, option
from corpusflow.counters import CounterDict
from corpusflow.document import Document


@dataclasses.dataclass(frozen=True)
class DigitsConfig(Config):
    GROUP = F.GROUP
    max_digit_ratio: float = option(
        0.5, "Documents with a larger share of ASCII digits are filtered (0..1).", lo=0, hi=1)


def too_many_digits(text: str, cfg: DigitsConfig = DigitsConfig()) -> F.FilterResult:
    """Reject a text whose share of digits among non-space characters is too large."""
    digits = sum(c.isdigit() and c.isascii() for c in text)
    if digits > cfg.max_digit_ratio * F.non_space_chars(text):
        return False, "too_many_digits"
    return F.KEEP


@pytest.fixture
def with_toy(monkeypatch):
    monkeypatch.setattr(F, "FILTERS", F.FILTERS + (F.Filter(too_many_digits, DigitsConfig),))


def parse(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    p = argparse.ArgumentParser(add_help=False)
    add_groups(p, clean_option_classes())
    return p, p.parse_args(argv)


def doc(text: str) -> Document:
    return Document(id="t:1", source="t", title="", text=text, meta={})


# 21 CJK characters and 9 digits: 30% digits.
TEXT = "数学是利用符号语言研究数量结构变化以及空间" + "123456789"


def test_toy_filter_option_hash_and_effect(with_toy):
    p, ns = parse(["--max_digit_ratio", "0.2", "--t2s", "false", "--pii", "off"])
    assert "--max_digit_ratio" in p.format_help()
    assert DigitsConfig in clean_option_classes()
    cfg = dataclasses.replace(CleanConfig.from_options(ns), quality_signals=False)
    assert cfg.threshold("max_digit_ratio") == 0.2
    assert cfg.to_json()["max_digit_ratio"] == 0.2        # part of the stage hash
    counts = CounterDict()
    out = Cleaner(cfg).clean(doc(TEXT), counts)
    assert (out.kind, out.reason) == ("filtered", "too_many_digits")
    assert counts.as_dict() == {"clean:filtered:too_many_digits": 1}
    # The default threshold (0.5) keeps it.
    _, ns = parse(["--t2s", "false", "--pii", "off"])
    counts = CounterDict()
    kept = Cleaner(dataclasses.replace(CleanConfig.from_options(ns), quality_signals=False)
                   ).clean(doc(TEXT), counts)
    assert kept.text == TEXT and counts.as_dict() == {"clean:kept": 1}


def test_toy_filter_runs_last_and_is_validated(with_toy):
    assert [f.reason for f in F.FILTERS][-2:] == ["repeated_lines", "too_many_digits"]
    # Short and digit-heavy: too_short comes first in the list, so it wins.
    assert F.apply_filters("12345中文", None, (DigitsConfig(0.1),)) == (False, "too_short")
    assert F.apply_filters(TEXT, None, (DigitsConfig(0.1),)) == (False, "too_many_digits")
    assert F.apply_filters(TEXT, None, ()) == (True, None)   # missing config: its defaults
    _, ns = parse(["--max_digit_ratio", "1.5"])
    with pytest.raises(ConfigError, match=r"--max_digit_ratio must be in \[0, 1\], got 1.5"):
        CleanConfig.from_options(ns).validate()


def test_builtin_registry_untouched_without_the_fixture():
    assert too_many_digits not in [f.fn for f in F.FILTERS]
    _, ns = parse([])
    assert not hasattr(ns, "max_digit_ratio")
