"""Tests for corpusflow.clean.filters: each filter at its threshold, and their order."""

from __future__ import annotations

import pytest

from corpusflow.clean import filters as F

ZH20 = "中" * 20


def test_reasons():
    assert tuple(f.reason for f in F.FILTERS) == F.FILTER_REASONS == ("bad_encoding", "empty_after_clean", "too_short", "too_long",
                                "low_cjk", "repeated_lines")


def test_counts():
    assert F.non_space_chars(" 中 文\n a\tb\u3000") == 4
    assert F.cjk_chars("中文abc，。〇㐀豈\U00020000") == 6


@pytest.mark.parametrize("text,keep", [("", False), (" \n \n", False), ("a", True)])
def test_empty_after_clean(text, keep):
    assert F.empty_after_clean(text) == ((True, None) if keep else (False, "empty_after_clean"))


def test_too_short_counts_non_space_chars():
    assert F.too_short("中" * 19) == (False, "too_short")
    assert F.too_short(ZH20) == (True, None)
    assert F.too_short(" ".join("中" * 19) + "\n\n") == (False, "too_short")
    assert F.too_short("中文", F.LengthConfig(min_chars=2)) == (True, None)


def test_too_long():
    assert F.too_long("中" * 10, F.LengthConfig(max_chars=10)) == (True, None)
    assert F.too_long("中" * 11, F.LengthConfig(max_chars=10)) == (False, "too_long")


def test_low_cjk():
    # 3 of 10 non-space chars are CJK: exactly the threshold is kept
    assert F.low_cjk("中文字abcdefg") == (True, None)
    assert F.low_cjk("中文abcdefgh") == (False, "low_cjk")
    assert F.low_cjk("中文 " + " ".join("abcdefgh")) == (False, "low_cjk")
    assert F.low_cjk("The quick brown fox jumps over the lazy dog.") == (False, "low_cjk")
    assert F.low_cjk("") == (False, "low_cjk")
    assert F.low_cjk("中文abcdefgh", F.CjkConfig(min_cjk_ratio=0.2)) == (True, None)


def test_repeated_lines():
    assert F.repeated_line_ratio("a\nb\na\na") == 0.5
    assert F.repeated_line_ratio("only one line") == 0.0
    assert F.repeated_lines("a\nb\na\na") == (False, "repeated_lines")
    # 3 of 10 lines repeat: exactly the threshold is kept
    text = "\n".join(["x", "x", "x", "x"] + [f"line {i}" for i in range(6)])
    assert F.repeated_line_ratio(text) == 0.3
    assert F.repeated_lines(text) == (True, None)
    assert F.repeated_lines("a\na") == (False, "repeated_lines")
    assert F.repeated_lines("a\na", F.RepeatedLinesConfig(max_repeated_line_ratio=0.5)) == (True, None)
    assert F.repeated_lines("单行文本") == (True, None)
    # empty lines do not count as lines
    assert F.repeated_line_ratio("a\n\n\nb\n\n") == 0.0


def test_bad_encoding():
    assert F.bad_encoding("中" * 99 + "\ufffd") == (True, None)       # 1%: kept
    assert F.bad_encoding("中" * 98 + "\ufffd" * 2) == (False, "bad_encoding")
    assert F.bad_encoding("") == (True, None)
    assert F.bad_encoding("中" * 98 + "\ufffd" * 2, F.EncodingConfig(0.02)) == (True, None)


@pytest.mark.parametrize("text,raw,configs,expected", [
    (ZH20, ZH20, (), (True, None)),
    (ZH20, "\ufffd" * 5 + ZH20, (), (False, "bad_encoding")),
    ("", "\ufffd", (), (False, "bad_encoding")),            # first failure wins
    ("", None, (), (False, "empty_after_clean")),
    ("abc", None, (), (False, "too_short")),
    ("a" * 30, None, (F.LengthConfig(max_chars=25),), (False, "too_long")),
    ("a" * 30, None, (), (False, "low_cjk")),
    ("\n".join([ZH20] * 3), None, (), (False, "repeated_lines")),
    (ZH20 + "\ufffd" * 5, None, (), (True, None)),          # no raw text: no encoding check
])
def test_apply_filters(text, raw, configs, expected):
    assert F.apply_filters(text, raw, configs) == expected
    assert F.run_plan(F.plan(configs), text, raw) == expected
