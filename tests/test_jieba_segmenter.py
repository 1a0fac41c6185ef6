"""JiebaSegmenter: interface rules, exact agreement with jieba.lcut, pickling."""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from pathlib import Path

import jieba
import pytest

from corpusflow.segment.base import check_spans
from corpusflow.segment.jieba_backend import JiebaSegmenter

# The shared corpus beside the repo; CORPUSFLOW_CORPUS overrides (tests skip
# or fall back to a committed string when it is absent).
CORPUS = Path(os.environ.get("CORPUSFLOW_CORPUS",
                             Path(__file__).resolve().parents[2] / "shared" / "corpus"))
TRICKY = [
    "", " ", "\r\n", "\t\n  ", "我来到北京清华大学", "他来到了网易杭研大厦",
    "小明硕士毕业于中国科学院计算所，后在日本京都大学深造",
    "iPhone6s售价5288元，涨幅3.5%，C++/C#程序员、A股和B超。",
    "我 爱\u3000北京\r\n天安门！！😀emoji后面", "ＡＢＣ全角１２３与half-width混排_test#1&2",
    "〇一二三四五六七八九十百千万亿", "這是繁體中文的句子，包含臺灣與香港",
    "abc def", "2016年7月20日下午3点45分", "--__..##&&%%", "z", "中",
]


def corpus_sentences(limit_chars: int) -> list[str]:
    out: list[str] = []
    n = 0
    if not CORPUS.is_dir():
        return out
    for f in sorted((CORPUS / "news").glob("*.txt")):
        for line in f.read_text(encoding="utf-8").splitlines():
            for s in line.replace("。", "。\n").split("\n"):
                if s.strip():
                    out.append(s)
                    n += len(s)
            if n >= limit_chars:
                return out
    return out


@pytest.fixture(scope="module")
def segs() -> tuple[JiebaSegmenter, JiebaSegmenter, JiebaSegmenter, JiebaSegmenter]:
    fast = JiebaSegmenter()
    fast.setup()
    fast_nohmm = JiebaSegmenter(hmm=False)
    ref = JiebaSegmenter(fast=False)
    ref_nohmm = JiebaSegmenter(hmm=False, fast=False)
    # Share one loaded dictionary (loading takes about a second each).
    for s in (fast_nohmm, ref, ref_nohmm):
        s._tok = fast._tok
        s._core = fast._core
    return fast, fast_nohmm, ref, ref_nohmm


def test_picklable_before_and_after_setup(segs):
    s = JiebaSegmenter(hmm=False, user_dict="x.txt")
    clone = pickle.loads(pickle.dumps(s))
    assert (clone.hmm, clone.user_dict, clone._tok) == (False, "x.txt", None)
    loaded = segs[0]
    assert loaded._tok is not None
    clone = pickle.loads(pickle.dumps(loaded))   # the dictionary is not shipped
    assert clone._tok is None and clone._core is None and clone.hmm is True


def test_identity():
    ident = JiebaSegmenter().identity()
    assert set(ident) == {"name", "version", "model_hash"}
    assert ident["name"] == "jieba" and ident["version"] == jieba.__version__
    dict_path = os.path.join(os.path.dirname(jieba.__file__), "dict.txt")
    assert ident["model_hash"] == hashlib.sha256(Path(dict_path).read_bytes()).hexdigest()


def test_spans_cover_and_match_jieba(segs):
    fast, fast_nohmm, ref, ref_nohmm = segs
    for seg, jieba_hmm in ((fast, True), (fast_nohmm, False)):
        out = seg.segment_batch(TRICKY)
        for s, sp in zip(TRICKY, out):
            assert check_spans(s, sp), (s, sp)
            assert [s[a:b] for a, b in sp] == fast._tok.lcut(s, HMM=jieba_hmm)
    assert fast.segment("我来到北京清华大学") == [(0, 1), (1, 3), (3, 5), (5, 9)]


def test_fast_path_equals_jieba_on_corpus(segs):
    """The re-implementation is word-for-word jieba (both HMM settings)."""
    sents = corpus_sentences(100_000)
    if not sents:
        pytest.skip("shared corpus not available")
    fast, fast_nohmm, ref, ref_nohmm = segs
    n = sum(len(s) for s in sents)
    timings = {}
    for a, b, name in ((fast, ref, "hmm"), (fast_nohmm, ref_nohmm, "no_hmm")):
        fast._core.hmm_cache.clear()
        fast._core.block_cache.clear()
        t0 = time.process_time()
        got = a.segment_batch(sents)
        t1 = time.process_time()
        want = b.segment_batch(sents)
        t2 = time.process_time()
        assert got == want
        timings[name] = (n / (t1 - t0), n / (t2 - t1))
    print("\n" + ", ".join(f"jieba {k}: {f / 1e3:.0f}k chars/s (lcut {r / 1e3:.0f}k)"
                           for k, (f, r) in timings.items()))


def test_batch_cache_returns_independent_lists(segs):
    fast = segs[0]
    out = fast.segment_batch(["我来到北京", "我来到北京"])
    assert out[0] == out[1] and out[0] is not out[1]


def test_user_dict(tmp_path):
    ud = tmp_path / "user.txt"
    ud.write_text("清华大学计算所 50 nt\n", encoding="utf-8")
    s = JiebaSegmenter(user_dict=str(ud))
    s.setup()
    ref = JiebaSegmenter(user_dict=str(ud), fast=False)
    ref._tok, ref._core = s._tok, s._core
    text = "他在清华大学计算所工作"
    assert "清华大学计算所" in [text[a:b] for a, b in s.segment(text)]
    assert s.segment(text) == ref.segment(text)
    assert s.identity()["model_hash"] != JiebaSegmenter().identity()["model_hash"]
    # The global jieba dictionary is untouched.
    assert "清华大学计算所" not in jieba.dt.FREQ
