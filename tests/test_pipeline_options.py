"""pipelines.build with the optional stages: near-dup + decontamination (issue 4), LTP (issue 5)."""

from __future__ import annotations

import json
import os

import pytest

from pipelines.build import BuildError
from tests.pipeline_util import ROOT, SAMPLE, build, digest_tree, read_jsonl_gz

VOCAB = str(ROOT / "data" / "vocab" / "sample_vocab.txt")


def _wiki_docs(n: int) -> list[dict]:
    lines = (SAMPLE / "zhwiki_sample.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x) for x in lines[:n]]


def test_near_dedup_and_decontamination_in_the_pipeline(tmp_path):
    docs = _wiki_docs(4)
    original = docs[1]
    paras = original["text"].split("\n")
    # A web-style near copy: a byline, one paragraph dropped, different id.
    copy = dict(original, id="900001", title=original["title"] + "（转载）",
                text="本文转载自网络，版权归原作者所有。\n" + "\n".join(paras[:-1]))
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs + [copy]) + "\n",
                   encoding="utf-8")
    # An "evaluation set" that quotes a sentence of article 3 verbatim.
    leaked = max(docs[3]["text"].split("。"), key=len)
    assert len(leaked) > 30
    evalf = tmp_path / "dev.txt"
    evalf.write_text(leaked + "。\n", encoding="utf-8")
    out = tmp_path / "out"
    m = build(out, "--stop_after", "dedup", "--near_dedup", "true", "--line_dedup", "false",
              "--decontaminate", str(evalf), inputs=["--input", str(src)])
    rejects = {r["reason"]: r for r in read_jsonl_gz(str(out / "rejects" / "*.jsonl.gz"))}
    near = rejects["near_duplicate"]
    assert {near["id"], near["kept_id"]} == {"wiki:" + original["id"], "wiki:900001"}
    assert near["kind"] == "duplicate" and near["similarity"] >= 0.7
    assert rejects["decontaminated"]["id"] == "wiki:" + docs[3]["id"]
    c = m["counts"]
    assert c == {"read": 5, "kept": 3, "filtered": 0, "duplicates": 1, "rejected": 1}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stages"]["dedup"]["near_cluster_sizes"] == {"2": 1}
    clusters = read_jsonl_gz(str(out / "dedup" / "clusters-*.jsonl.gz"))
    assert len(clusters) == 1 and clusters[0]["size"] == 2
    assert clusters[0]["kept_id"] == near["kept_id"]


@pytest.fixture(scope="module")
def ltp_model(tmp_path_factory):
    pytest.importorskip("ltp_extension")
    from corpusflow.segment.train import read_segmented, train_perceptron
    sents = read_segmented(str(ROOT / "tests" / "data" / "zhwiki_jieba_seg.txt"))
    out = str(tmp_path_factory.mktemp("ltp") / "model")
    return train_perceptron(sents, out, epochs=3, shuffle=False)


def test_ltp_segmenter_through_the_pipeline(tmp_path, ltp_model):
    tf = pytest.importorskip("tensorflow")
    from corpusflow.segment.registry import make_segmenter
    docs = _wiki_docs(2)
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    m = build(out, "--vocab_file", VOCAB, "--segmenter", "ltp", "--ltp_model", ltp_model,
              "--max_seq_length", "64", "--max_predictions_per_seq", "10", "--num_shards", "2",
              "--num_doc_shards", "1", "--token_boundary", "--masking", "wwm",
              inputs=["--input", str(src)])
    seg = m["segmenter"]
    assert seg["name"] == "ltp" and len(seg["model_hash"]) == 64 and seg["version"]
    assert m["tfrecords"]["num_instances"] > 0
    # Token boundaries written by the pipeline are the LTP words' starts: rebuild the
    # words of one instance's first segment from the vocab and compare with LTP's
    # segmentation of the same characters.
    vocab = [x.rstrip("\n") for x in open(VOCAB, encoding="utf-8")]
    path = sorted((out / "tfrecords").glob("*.tfrecord"))[0]
    spec = {"input_ids": tf.io.FixedLenFeature([64], tf.int64),
            "token_boundary": tf.io.FixedLenFeature([64], tf.int64),
            "masked_lm_positions": tf.io.FixedLenFeature([10], tf.int64),
            "masked_lm_ids": tf.io.FixedLenFeature([10], tf.int64),
            "masked_lm_weights": tf.io.FixedLenFeature([10], tf.float32)}
    ltp = make_segmenter("ltp", model_dir=ltp_model)
    ltp.setup()
    checked = 0
    for raw in tf.data.TFRecordDataset([str(path)]):
        ex = {k: v.numpy().tolist() for k, v in tf.io.parse_single_example(raw, spec).items()}
        ids = list(ex["input_ids"])
        for p, label, w in zip(ex["masked_lm_positions"], ex["masked_lm_ids"], ex["masked_lm_weights"]):
            if w:
                ids[p] = label  # restore the original token under each mask
        sep = ids.index(vocab.index("[SEP]"))
        toks = [vocab[i] for i in ids[1:sep]]
        if not all(len(t) == 1 and "\u4e00" <= t <= "\u9fff" for t in toks):
            continue  # only pure-CJK segments map one token per character
        text = "".join(toks)
        words = [(a, b) for a, b in ltp.segment(text)]
        starts = {a for a, _ in words}
        got = {i for i, b in enumerate(ex["token_boundary"][1:sep]) if b}
        # The segment is a window of the document's sentences: boundaries inside
        # it match LTP's words except possibly at its first and last word.
        inner = {s for s in starts if 0 < s < len(text) - 8}
        assert inner - {0} <= got | {0}
        checked += 1
    assert checked > 0


def test_bad_ltp_model_fails_before_running(tmp_path):
    with pytest.raises(BuildError, match="does not exist"):
        build(tmp_path / "out", "--vocab_file", VOCAB, "--segmenter", "ltp",
              "--ltp_model", str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BuildError, match="config.json"):
        build(tmp_path / "out", "--vocab_file", VOCAB, "--segmenter", "ltp",
              "--ltp_model", str(tmp_path / "empty"))
    assert not os.path.exists(tmp_path / "out" / "manifest.json")


def test_bad_ltp_device_fails_before_running(tmp_path, ltp_model):
    for bad in ("gpu", "cuda:", "CPU", ""):
        with pytest.raises(BuildError, match="--ltp_device must be cpu, cuda, cuda:N or auto"):
            build(tmp_path / "out", "--vocab_file", VOCAB, "--segmenter", "ltp",
                  "--ltp_model", ltp_model, "--ltp_device", bad)
    assert not os.path.exists(tmp_path / "out")


def test_ltp_device_reaches_the_segmenter():
    from apache_beam.options.pipeline_options import PipelineOptions

    from corpusflow.segment.registry import SegmentConfig, constructor_options
    from pipelines.options import BuildOptions

    def segmenter_options(b):
        return constructor_options(SegmentConfig.from_options(b))
    b = PipelineOptions(["--segmenter", "ltp", "--ltp_model", "M"]).view_as(BuildOptions)
    assert segmenter_options(b) == {"model_dir": "M", "batch_size": 256, "device": "auto",
                                    "trust_model_code": False}
    b = PipelineOptions(["--segmenter", "ltp", "--ltp_model", "M", "--ltp_device", "cuda:1"]
                        ).view_as(BuildOptions)
    assert segmenter_options(b)["device"] == "cuda:1"


def test_ltp_block_batching_keeps_output_and_times_segmentation(tmp_path, ltp_model, monkeypatch):
    """Documents are segmented in blocks of ~segment_batch_size sentences, with
    whole-document word starts where every sentence allows it: the shards do
    not depend on the block size or on which path a document took, and
    stats.json accounts the segmenter's time over every character read."""
    import re

    from corpusflow.segment.base import Segmenter
    from corpusflow.segment.ltp_backend import LTPSegmenter
    docs = _wiki_docs(6)
    for d in docs[:3]:  # no whitespace at all in these; the others have some
        d["text"] = re.sub(r"\s+", "", d["text"])
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n", encoding="utf-8")
    digests, timing, n_docs = {}, {}, {}
    for run, bs in (("bs1", "1"), ("block", "100000"), ("spans", "100000")):
        if run == "spans":  # the general path for every document
            # The base class's block_word_starts: LTP offers no per-document
            # word starts, so every document takes spans.
            monkeypatch.setattr(LTPSegmenter, "block_word_starts", Segmenter.block_word_starts)
        out = tmp_path / run
        m = build(out, "--vocab_file", VOCAB, "--segmenter", "ltp", "--ltp_model", ltp_model,
                  "--max_seq_length", "64", "--max_predictions_per_seq", "10", "--num_shards", "2",
                  "--num_doc_shards", "1", "--segment_block_sentences", bs,
                  inputs=["--input", str(src)])
        assert m["tfrecords"]["num_instances"] > 0
        digests[run] = digest_tree(out, ("tfrecords",))
        stats = json.loads((out / "stats.json").read_text())
        timing[run] = stats["stages"]["segment"]["segment_time"]
        assert timing[run]["chars"] == m["counters"]["pretrain:chars"]
        assert timing[run]["sentences"] == m["counters"]["pretrain:sentences"]
        assert timing[run]["cpu_seconds"] > 0 and timing[run]["wall_seconds"] > 0
        # Each stage records its peak RSS (a whole Python process with Beam is > 50 MB).
        assert all(stats["stages"][st]["peak_rss_mb"] > 50 for st in ("clean", "dedup", "segment", "instances", "tfrecords"))
        n_docs[run] = m["counters"]["pretrain:docs"]
    assert digests["bs1"] == digests["block"] == digests["spans"] and digests["bs1"]
    assert n_docs["bs1"] == n_docs["block"] == n_docs["spans"] == 6
    from corpusflow.clean.sentences import split_sentences
    final = read_jsonl_gz(str(tmp_path / "block" / "docs" / "*.jsonl.gz"))
    with_space = sum(any(re.search(r"\s", x) for x in split_sentences(d["text"])) for d in final)
    assert 0 < with_space < 6  # both kinds of document, and both give the general path's bytes
    # One docs shard, so one block at the large size: one call for every
    # document's word starts (whitespace included, none declined); one call per
    # document at size 1; one call in all on the general path.
    assert timing["block"]["calls"] == 1
    assert timing["bs1"]["calls"] == 6
    assert timing["spans"]["calls"] == 1


def test_driver_checks_an_ltp_model_without_keeping_it_loaded(ltp_model, monkeypatch):
    """The driver proves the model loads (validate, in a child process) but never
    loads it itself: on a local run the driver is every stage's worker too."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from corpusflow.segment.ltp_backend import LTPSegmenter
    from pipelines.build import BuildError
    from pipelines.options import BuildOptions
    from pipelines.stages import Ctx, segment

    def _segmenter_identity(b):
        return segment.identity(Ctx(options=None, b=b, out="", runner=None))

    loads = []
    real_setup = LTPSegmenter.setup
    monkeypatch.setattr(LTPSegmenter, "setup", lambda self: loads.append(1) or real_setup(self))
    b = PipelineOptions(["--segmenter", "ltp", "--ltp_model", ltp_model]).view_as(BuildOptions)
    ident = _segmenter_identity(b)
    assert ident["name"] == "ltp" and len(ident["model_hash"]) == 64
    assert loads == []
    bad = PipelineOptions(["--segmenter", "ltp", "--ltp_model", ltp_model + "-missing"]
                          ).view_as(BuildOptions)
    with pytest.raises(BuildError, match="--segmenter ltp"):
        _segmenter_identity(bad)
