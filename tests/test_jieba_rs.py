"""The jieba-rs backend: spans cover sentences, agree with jieba's boundaries."""

import pickle

import pytest

pytest.importorskip("rjieba")

from corpusflow.segment.base import check_spans  # noqa: E402
from corpusflow.segment.registry import make_segmenter  # noqa: E402


def test_spans_and_words():
    seg = make_segmenter("jieba_rs")
    s = "我来到北京清华大学 hello world"
    spans = seg.segment(s)
    assert check_spans(s, spans)
    assert [s[a:b] for a, b in spans] == ["我", "来到", "北京", "清华大学", " ", "hello", " ", "world"]
    assert seg.identity()["name"] == "jieba_rs"
    assert pickle.loads(pickle.dumps(seg)).segment(s) == spans


def test_boundaries_are_jiebas():
    text = ("新华社北京电，国务院总理今天在人民大会堂会见了来访的外国代表团。"
            "双方就经济合作、人文交流等问题深入交换了意见。")
    rs = make_segmenter("jieba_rs").segment(text)
    py = make_segmenter("jieba").segment(text)
    assert {b for _, b in rs} <= {b for _, b in py} | {len(text)}
    assert len(rs) >= 0.95 * len(py)


def test_user_dict(tmp_path):
    d = tmp_path / "dict.txt"
    d.write_text("清华大学来到 100000 n\n", encoding="utf-8")
    seg = make_segmenter("jieba_rs", user_dict=str(d))
    s = "我清华大学来到北京"
    assert "清华大学来到" in [s[a:b] for a, b in seg.segment(s)]
