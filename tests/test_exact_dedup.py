"""Tests for corpusflow.dedup.exact: comparison form, keys, line removal."""

from __future__ import annotations

import pathlib

import pytest

from corpusflow.dedup import exact as E
from corpusflow.document import stable_hash64

CORPUS = pathlib.Path("/work/shared/corpus")


@pytest.mark.parametrize("text,form", [
    ("中国，你好！", "中国你好"),
    ("中国, 你好", "中国你好"),
    (" 中国\n\t你好\u3000\xa0", "中国你好"),
    ("Hello-World, HELLO", "helloworldhello"),
    ("“引号”《书名》（括号）……——", "引号书名括号"),
    ("中\u200b国\ufeff", "中国"),                 # format characters
    ("3.5% + 1 = ¥4.5", "35+1=¥45"),              # symbols and digits are content
    ("", ""),
])
def test_comparison_form(text, form):
    assert E.comparison_form(text) == form


def test_text_key_is_stable_hash_of_form():
    assert E.text_key("中国，你好！") == stable_hash64("中国你好")


def test_text_key_equal_for_reposts():
    a = "北京时间4月12日，湖人击败国王。\n拜纳姆无大碍。"
    b = "北京时间 4月12日, 湖人击败国王.  拜纳姆无大碍"
    assert E.text_key(a) == E.text_key(b)
    assert E.text_key(a) != E.text_key(a.replace("国王", "马刺"))
    assert 0 <= E.text_key(a) < 2 ** 64


def test_line_keys():
    text = "短行\n这是一个足够长的句子啊啊啊\n\n  这是一个足够长的句子, 啊啊啊！\nabcdefghi"
    keys = E.line_keys(text)
    k = stable_hash64("这是一个足够长的句子啊啊啊")
    assert keys == [(1, k), (3, k)]
    assert E.line_keys(text, min_chars=9) == [(1, k), (3, k), (4, stable_hash64("abcdefghi"))]
    assert E.line_keys("") == []


@pytest.mark.parametrize("text,indices,expected", [
    ("a\nb\nc", [1], "a\nc"),
    ("a\nb\nc", {0, 2}, "b"),
    ("a\nb\nc", [], "a\nb\nc"),
    ("a\nb\nc", [0, 1, 2], ""),
    ("a\nb\nc", [5, -1], "a\nb\nc"),           # out of range: ignored
    ("a\n\nc", [1], "a\nc"),
    ("a\nb\nc", iter([1, 1]), "a\nc"),
])
def test_remove_lines(text, indices, expected):
    assert E.remove_lines(text, indices) == expected


def test_line_keys_and_remove_lines_compose():
    doc1 = "页面导航：首页 新闻 体育 娱乐\n湖人队今天击败了国王队。"
    doc2 = "页面导航：首页 新闻 体育 娱乐\n拜纳姆的伤情并无大碍。"
    seen = {k for _, k in E.line_keys(doc1)}
    dup = [i for i, k in E.line_keys(doc2) if k in seen]
    assert E.remove_lines(doc2, dup) == "拜纳姆的伤情并无大碍。"


@pytest.mark.skipif(not (CORPUS / "messy/ai_news_multilabel_dups.val.txt").exists(),
                    reason="no corpus")
def test_real_multilabel_dups_collapse():
    # the same article appears under several labels: '"label;;article' lines
    lines = (CORPUS / "messy/ai_news_multilabel_dups.val.txt").read_text(
        encoding="utf-8").splitlines()
    bodies = [ln.split(";;", 1)[1] for ln in lines if ";;" in ln]
    keys = {E.text_key(b) for b in bodies}
    assert 0 < len(keys) < len(bodies)
