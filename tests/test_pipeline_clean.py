"""Issue 2: the ingest -> clean -> exact dedup pipeline end to end."""

from __future__ import annotations

import collections
import gzip
import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.build import BuildError
from pipelines.stages.clean import ReadAndClean
from corpusflow.clean.cleaner import CleanConfig
from tests.fault_corpus import build_fault_corpus
from tests.pipeline_util import SAMPLE, build, digest_tree, read_jsonl_gz

EXPECTED_SAMPLE_COUNTS = {"read": 352, "kept": 310, "filtered": 41, "duplicates": 1, "rejected": 0}


def _check_accounting(out, manifest):
    c = manifest["counts"]
    assert c["read"] == c["kept"] + c["filtered"] + c["duplicates"] + c["rejected"]
    docs = read_jsonl_gz(str(out / "docs" / "*.jsonl.gz"))
    rejects = read_jsonl_gz(str(out / "rejects" / "*.jsonl.gz"))
    assert len(docs) == c["kept"]
    kinds = collections.Counter(r["kind"] for r in rejects)
    assert kinds == collections.Counter({k: v for k, v in (("filtered", c["filtered"]),
                                                            ("duplicate", c["duplicates"]),
                                                            ("rejected", c["rejected"])) if v})
    for r in rejects:
        assert r["stage"] and r["reason"] and (r.get("id") or (r.get("file") and "line" in r))
    return docs, rejects


def test_sample_pipeline_counts_and_outputs(tmp_path):
    m = build(tmp_path, "--stop_after", "dedup")
    assert m["counts"] == EXPECTED_SAMPLE_COUNTS
    docs, rejects = _check_accounting(tmp_path, m)
    assert {d["source"] for d in docs} == {"wiki", "baike", "text"}
    assert all(set(d) >= {"id", "source", "title", "text"} for d in docs)
    # Article "数学" is in both the JSON lines and the <doc> sample: one survives.
    dup = [r for r in rejects if r["reason"] == "exact_duplicate"]
    assert len(dup) == 1 and dup[0]["kept_id"] == dup[0]["id"]
    # Traditional text from the wiki sample was converted, markup resolved.
    text = "\n".join(d["text"] for d in docs)
    assert "-{" not in text and "數學" not in text
    assert m["counters"]["clean:normalized:t2s"] > 0
    assert len(m["config_hash"]) == 64 and m["versions"]["apache-beam"] == "2.77.0"
    assert [f["path"].rsplit("/", 1)[1] for f in m["inputs"]] == sorted(
        p.name for p in SAMPLE.iterdir() if p.suffix in (".jsonl", ".gz", ".txt"))


def test_parquet_docs(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    m = build(tmp_path, "--stop_after", "dedup", "--docs_format", "parquet", "--num_doc_shards", "2")
    files = sorted((tmp_path / "docs").glob("*.parquet"))
    assert len(files) == 2
    rows = sum(pq.read_table(f).num_rows for f in files)
    assert rows == m["counts"]["kept"] == EXPECTED_SAMPLE_COUNTS["kept"]
    assert pq.read_table(files[0]).column_names == ["id", "source", "title", "text", "meta"]


def test_fault_injection_exact_rejects(tmp_path):
    expected = build_fault_corpus(tmp_path / "in")
    out = tmp_path / "out"
    m = build(out, "--stop_after", "dedup", "--line_dedup", "false",
              inputs=sum((["--input", f] for f in expected["files"]), []))
    c = m["counts"]
    assert c["read"] == expected["records"]
    got = {k.split(":", 2)[2]: v for k, v in m["counters"].items() if k.startswith("read:rejected:")}
    assert got == expected["rejects"]
    assert c["rejected"] == sum(expected["rejects"].values())
    # Synthetic good documents are long, CJK and distinct: cleaning and dedup keep them all.
    assert c["kept"] == expected["documents"]
    assert c["filtered"] == 0 and c["duplicates"] == 0
    docs, rejects = _check_accounting(out, m)
    reasons = collections.Counter(r["reason"] for r in rejects)
    assert reasons == collections.Counter(expected["rejects"])
    # Rejects keep an excerpt, never the 50 MB line.
    assert max(len(json.dumps(r, ensure_ascii=False)) for r in rejects) < 4096


def test_empty_glob_is_an_error(tmp_path):
    with pytest.raises(BuildError, match="matched no files"):
        build(tmp_path, inputs=["--input", str(tmp_path / "nothing*.jsonl")])


def test_t2s_switch(tmp_path):
    m = build(tmp_path, "--stop_after", "clean", "--t2s", "false",
              inputs=["--input", str(SAMPLE / "jieba_lyric.trad.txt")])
    docs = read_jsonl_gz(str(tmp_path / "stages" / "clean" / "*.jsonl.gz"))
    # bert_text: one document per blank-line separated stanza, kept in Traditional.
    assert m["counts"]["kept"] == len(docs) == 7
    assert "沒有" in "".join(d["text"] for d in docs)


def test_read_and_clean_dofn_with_testpipeline(tmp_path):
    src = tmp_path / "news.jsonl"
    lines = [
        {"news_id": "n1", "title": "标题", "content": "這是一篇關於北京天氣的新聞報道，今天晴轉多雲，氣溫二十度左右，適合出行。"},
        {"news_id": "n2", "title": "短", "content": "太短了"},
    ]
    src.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n{bad json\n",
                   encoding="utf-8")
    with BeamTestPipeline(runner="FnApiRunner") as p:
        res = (p | beam.Create([str(src)]) | beam.ParDo(ReadAndClean(
            "auto", "auto", CleanConfig(), 1 << 20)).with_outputs("rejects", main="docs"))
        assert_that(res.docs | beam.Map(lambda d: (d["id"], d["text"])), equal_to([
            ("news:n1", "这是一篇关于北京天气的新闻报道，今天晴转多云，气温二十度左右，适合出行。")]),
            label="docs")
        assert_that(res.rejects | beam.Map(lambda r: (r.get("id"), r["reason"], r["kind"])),
                    equal_to([("news:n2", "too_short", "filtered"),
                              (None, "malformed_json", "rejected")]), label="rejects")


@pytest.mark.slow
def test_deterministic_across_reruns_and_workers(tmp_path):
    args = ("--stop_after", "dedup", "--num_doc_shards", "4")
    build(tmp_path / "a", *args)
    build(tmp_path / "b", *args)
    build(tmp_path / "c", *args, "--direct_num_workers", "2",
          "--direct_running_mode", "multi_processing")
    da = digest_tree(tmp_path / "a", ("docs", "rejects", "stages/clean"))
    assert da and da == digest_tree(tmp_path / "b", ("docs", "rejects", "stages/clean"))
    assert da == digest_tree(tmp_path / "c", ("docs", "rejects", "stages/clean"))
