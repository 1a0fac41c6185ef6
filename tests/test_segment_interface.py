"""The declared segmenter interface: defaults on the base class, and
``starts_for_block`` (the segment stage's one call) equal to the reference path
(per-sentence spans -> word starts) whichever path a document takes, with its
time and fallbacks accounted."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest

from corpusflow.counters import CounterDict
from corpusflow.segment.base import Segmenter, Span, char_spans, word_starts_from_spans
from corpusflow.segment.registry import make_segmenter

DOCS = [["我来到北京清华大学。", "他说：“今天天气很好！”"], ["数学是一门学科。"] * 3, ["a"], [],
        [""], ["", "中文"], ["我来到北京\r", "清华大学"], ["  空格  ", "\t"],
        ["你好。", "2016年，GDP增长6.7%"], ["abc def", "X 坏句子"]]


class PairSegmenter(Segmenter):
    """Two characters a word; raises on a sentence containing "X"."""

    name = "pairs"

    def _segment_batch(self, sentences: Sequence[str]) -> list[list[Span]]:
        if any("X" in s for s in sentences):
            raise ValueError("cannot segment X")
        return [[(i, min(i + 2, len(s))) for i in range(0, len(s), 2)] for s in sentences]

    def identity(self) -> dict:
        return {"name": self.name, "version": "1", "model_hash": "0" * 64}


def reference(seg: Segmenter, docs) -> list[np.ndarray]:
    return [word_starts_from_spans(ss, seg.segment_batch(ss)) for ss in docs]


def timing() -> dict:
    return {"cpu_seconds": 0.0, "wall_seconds": 0.0, "calls": 0}


def test_defaults_of_a_minimal_backend():
    seg = PairSegmenter()
    seg.validate()
    seg.setup()
    seg.teardown()
    assert seg.check() == seg.identity()
    assert seg.word_starts(["中文"]) is None
    assert seg.block_word_starts(DOCS) == [None] * len(DOCS)


def test_minimal_backend_block_equals_reference_and_counts_fallbacks():
    seg = PairSegmenter()
    counts, t = CounterDict(), timing()
    got = seg.starts_for_block(DOCS, counts, t)
    # The fast path declined everything (not a call); one segment_batch call.
    assert t["calls"] == 1 and t["wall_seconds"] > 0
    # The batch raised (an "X" sentence), was retried sentence by sentence, and
    # the one bad sentence fell back to characters, counted once.
    assert counts.as_dict() == {"segment:fallback:sentence": 1}
    assert seg.fallbacks == 1
    ref = reference(PairSegmenter(), DOCS)
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        assert np.array_equal(a, b)
    last = got[-1]  # "abc def" in pairs, "\n", then "X 坏句子" one word per character
    assert sorted(last.tolist()) == [0, 2, 4, 6, 7, 8, 9, 10, 11, 12, 13]
    assert char_spans("X 坏") == [(0, 1), (1, 2), (2, 3)]


def test_accounting_is_optional():
    seg = PairSegmenter()
    got = seg.starts_for_block([["中文字符"]])
    assert got[0].tolist() == [4, 0, 2]
    assert seg.starts_for_block([]) == []


@pytest.mark.parametrize("name", ["jieba", "jieba_rs"])
def test_jieba_block_equals_reference(name):
    if name == "jieba_rs":
        pytest.importorskip("rjieba")
    seg = make_segmenter(name)
    counts, t = CounterDict(), timing()
    got = seg.starts_for_block(DOCS, counts, t)
    ref = reference(make_segmenter(name), DOCS)
    for ss, a, b in zip(DOCS, got, ref):
        assert np.array_equal(np.unique(a), np.unique(b)), ss
    # Whole-document word starts for most documents in one call; the ones it
    # declines ("\r" before a separator, no sentences) in one more.
    assert t["calls"] == 2
    assert counts.as_dict() == {}
    # Every document on the fast path: one call.
    t = timing()
    seg.starts_for_block(DOCS[:3], counts, t)
    assert t["calls"] == 1
