"""Decontamination: eval-file parsing, the n-gram index, and the Beam composite."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from corpusflow.counters import CounterDict
from corpusflow.dedup.decontam import DecontamConfig, EvalIndex, eval_texts
from pipelines.beam_util import query_counters
from pipelines.decontaminate import Decontaminate, DecontamPerFile

CMRC = {"version": "v1.0", "data": [{"id": "DEV_0", "paragraphs": [{
    "id": "DEV_0_P", "context": "《战国无双3》是由光荣和ω-force开发的战国无双系列的正统第三续作。本作以三大故事为主轴。",
    "qas": [{"id": "DEV_0_QUERY_0", "question": "《战国无双3》是由哪两个公司合作开发的？",
             "answers": [{"text": "光荣和ω-force", "answer_start": 11}]}]}]}]}
LCQMC = "喜欢打篮球的男生喜欢什么样的女生\t爱打篮球的男生喜欢什么样的女生\t1\n我手机丢了，我想换个手机\t我想买个新手机\t1\n"
JSONL = '{"sentence": "今天天气真不错，我们一起去公园散步吧", "label": "0", "id": 7}\n'


def test_eval_texts_formats():
    assert list(eval_texts(json.dumps(CMRC, ensure_ascii=False))) == [
        "v1.0", CMRC["data"][0]["paragraphs"][0]["context"], "《战国无双3》是由哪两个公司合作开发的？",
        "光荣和ω-force"]
    assert list(eval_texts(LCQMC)) == ["喜欢打篮球的男生喜欢什么样的女生", "爱打篮球的男生喜欢什么样的女生", "1",
                                       "我手机丢了，我想换个手机", "我想买个新手机", "1"]
    assert list(eval_texts(JSONL)) == ["今天天气真不错，我们一起去公园散步吧"]
    assert list(eval_texts("\ufeff一行文字\n\n[不是JSON]\n")) == ["一行文字", "[不是JSON]"]


def _index(cfg=DecontamConfig()):
    return EvalIndex.from_texts([
        ("/evals/cmrc_dev.json", list(eval_texts(json.dumps(CMRC, ensure_ascii=False)))),
        ("/evals/lcqmc_dev.tsv", list(eval_texts(LCQMC))),
    ], cfg)


def test_index_stats():
    idx = _index()
    # Texts: v1.0 and "1" x2 are too short; the question (15 chars of form) and the
    # LCQMC sentences (>= 13) are n-grams; "我手机丢了我想换个手机" (11) and
    # "我想买个新手机" (7 < 8 skipped), "光荣和ωforce" (10) are whole-text entries.
    assert idx.stats["texts"] == 10
    assert idx.stats["short_texts_skipped"] == 4
    assert idx.stats["whole_texts"] == 2


def test_check_flags_long_overlap_with_attribution():
    idx = _index()
    c = CounterDict()
    # Same context sentence, different punctuation width and surrounding text.
    doc = "游戏新闻：战国无双3是由光荣和ω－force开发的战国无双系列的正统第三续作,值得一玩。"
    hit = idx.check(doc, c)
    assert hit["eval_file"] == "cmrc_dev.json" and hit["eval_path"] == "/evals/cmrc_dev.json"
    assert hit["reason"] == "decontaminated" and hit["action"] == "drop"
    assert hit["matched_ngrams"] >= 10 and hit["excerpt"].startswith("战国无双3是由光荣")
    assert idx.check("爱打篮球的男生喜欢什么样的女生呢？求解答", c)["eval_file"] == "lcqmc_dev.tsv"
    # A short eval text matches only whole.
    assert idx.check("他说：我手机丢了，我想换个手机。", c)["eval_file"] == "lcqmc_dev.tsv"
    assert idx.check("我手机丢了，我想换", c) is None
    assert idx.check("战国无双是一个游戏系列，本作以三大故事为主。", c) is None  # < 13 shared chars
    assert idx.check("", c) is None
    assert c.as_dict() == {"decontam:checked": 6, "decontam:removed": 3}


def test_min_matches():
    strict = _index(DecontamConfig(min_matches=3))
    assert strict.check("爱打篮球的男生喜欢什么样的女生", CounterDict()) is not None  # 15 chars: 3
    assert strict.check("打篮球的男生喜欢什么样的女生", CounterDict()) is None     # 14 chars: 2


def test_frequent_ngrams_left_out():
    texts = [f"下列说法中正确的一项是哪一个选项第{i}题" for i in range(30)]
    idx = EvalIndex.from_texts([("/e/exam.txt", texts)], DecontamConfig(max_text_freq=20))
    assert idx.stats["frequent_ngrams_dropped"] == 5  # 17-char template: its 5 13-grams
    assert idx.check("请问下列说法中正确的一项是哪一个选项呢", CounterDict()) is None
    assert idx.check("下列说法中正确的一项是哪一个选项第7题", CounterDict()) is not None


def test_config_validation():
    with pytest.raises(ValueError):
        DecontamConfig(action="delete")
    with pytest.raises(ValueError):
        DecontamConfig(min_text_chars=20)


def test_beam_decontaminate_per_file(tmp_path):
    (tmp_path / "cmrc_dev.json").write_text(json.dumps(CMRC, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "lcqmc_dev.tsv").write_text(LCQMC, encoding="utf-8")
    docs = [("d1", "news", "战国无双3是由光荣和ω-force开发的战国无双系列的正统第三续作。"),
            ("d2", "baike", "问：喜欢打篮球的男生喜欢什么样的女生？答：随缘。"),
            ("d3", "baike", "爱打篮球的男生喜欢什么样的女生"),
            ("d4", "wiki", "完全无关的一段文字，讲的是别的事情。")]
    p = beam.Pipeline(runner=FnApiRunner())
    flagged = p | beam.Create(docs) | Decontaminate([str(tmp_path / "*.json"),
                                                     str(tmp_path / "*.tsv")])
    assert_that(flagged | beam.Map(lambda kv: (kv[0], kv[1]["eval_file"], kv[1]["reason"])),
                equal_to([("d1", "cmrc_dev.json", "decontaminated"),
                          ("d2", "lcqmc_dev.tsv", "decontaminated"),
                          ("d3", "lcqmc_dev.tsv", "decontaminated")]), label="Flagged")
    assert_that(flagged | DecontamPerFile(),
                equal_to([("cmrc_dev.json", 1), ("lcqmc_dev.tsv", 2)]), label="PerFile")
    result = p.run()
    result.wait_until_finish()
    assert query_counters(result) == {"decontam:checked": 4, "decontam:removed": 3}
    with pytest.raises(ValueError):
        Decontaminate([str(tmp_path / "nothing*.json")])
