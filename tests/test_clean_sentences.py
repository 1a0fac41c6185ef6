"""Tests for corpusflow.clean.sentences.split_sentences: exact splits of tricky inputs."""

from __future__ import annotations

import json
import pathlib

import pytest

from corpusflow.clean.sentences import split_sentences

CORPUS = pathlib.Path("/work/shared/corpus")


@pytest.mark.parametrize("text,expected", [
    ("", []),
    ("\n\n \n", []),
    ("没有终止符", ["没有终止符"]),
    ("第一句。第二句！第三句？第四句；第五句", ["第一句。", "第二句！", "第三句？", "第四句；", "第五句"]),
    # runs of terminators stay together
    ("真的吗？！不会吧……好吧…行", ["真的吗？！", "不会吧……", "好吧…", "行"]),
    ("啊！！！什么？？", ["啊！！！", "什么？？"]),
    ("等一下。。。好", ["等一下。。。", "好"]),
    # closing quotes/brackets stay with the sentence they close
    ("他说：“你好。”然后走了。", ["他说：“你好。”", "然后走了。"]),
    ("「真的嗎？」她問。", ["「真的嗎？」", "她問。"]),
    ("（见上。）然后", ["（见上。）", "然后"]),
    ("书名《好！》出版了", ["书名《好！》", "出版了"]),
    ("他说：“走吧！”』】后来", ["他说：“走吧！”』】", "后来"]),
    ('他说:"好的。"然后', ['他说:"好的。"', "然后"]),
    # ASCII "." never splits
    ("价格3.5元，e.g. 这样。U.S.A. 很大", ["价格3.5元，e.g. 这样。", "U.S.A. 很大"]),
    ("等等...结束", ["等等...结束"]),
    # ASCII !?; split only before non-ASCII text or the end
    ("Yahoo! Inc很大!下一句", ["Yahoo! Inc很大!", "下一句"]),
    ("Hi!   中文", ["Hi!", "中文"]),
    ("(Azevedo, 2005; Shute, 2008)。后文", ["(Azevedo, 2005; Shute, 2008)。", "后文"]),
    ("a;b;你好", ["a;b;", "你好"]),
    ("What?! 真的", ["What?!", "真的"]),
    ('He said "wow!" then', ['He said "wow!" then']),
    ("abc!", ["abc!"]),
    # newlines always split; spaces around sentences are stripped
    ("第一行\n\n  第二行。  第三行\n", ["第一行", "第二行。", "第三行"]),
    ("标题 没有句号\n正文。", ["标题 没有句号", "正文。"]),
    # a lone run of terminators is still a (non-empty) sentence
    ("。。。", ["。。。"]),
])
def test_split(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize("text,max_chars,expected", [
    # cut after the last comma-like char within the limit
    ("一，二，三四五六七八", 6, ["一，二，", "三四五六七八"]),
    ("甲乙、丙丁戊己庚", 5, ["甲乙、", "丙丁戊己庚"]),
    ("ab, cdefgh", 5, ["ab,", "cdefg", "h"]),
    # no comma: hard cut
    ("一二三四五六七八九十", 4, ["一二三四", "五六七八", "九十"]),
    # exactly at the limit: untouched
    ("一二三四", 4, ["一二三四"]),
    # the comma-cut piece keeps the comma; the rest is cut again
    ("一二，三四五六七，八九十。下句", 6, ["一二，", "三四五六七，", "八九十。", "下句"]),
])
def test_long_sentences(text, max_chars, expected):
    out = split_sentences(text, max_chars=max_chars)
    assert out == expected
    assert all(0 < len(s) <= max_chars for s in out)


def test_max_chars_must_be_positive():
    with pytest.raises(ValueError):
        split_sentences("文本", max_chars=0)


def test_default_max_chars_is_500():
    out = split_sentences("字" * 1200)
    assert [len(s) for s in out] == [500, 500, 200]


@pytest.mark.skipif(not (CORPUS / "news/thucnews_cnews_val_first300.news2016zh.jsonl").exists(),
                    reason="no corpus")
def test_real_news_invariants():
    path = CORPUS / "news/thucnews_cnews_val_first300.news2016zh.jsonl"
    for line in path.open(encoding="utf-8"):
        text = json.loads(line)["content"]
        sents = split_sentences(text, max_chars=200)
        assert all(s and s == s.strip() and len(s) <= 200 for s in sents)
        # nothing but whitespace is lost
        assert "".join("".join(sents).split()) == "".join(text.split())
