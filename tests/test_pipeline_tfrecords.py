"""Issue 3: raw sample -> TFRecords through pipelines.build, parsed back with TF."""

from __future__ import annotations

import glob
import json

import pytest

from pipelines.build import BuildError, file_sha256
from tests.pipeline_util import ROOT, SAMPLE_INPUTS as SAMPLE_ARGS, build, digest_tree

VOCAB = str(ROOT / "data" / "vocab" / "sample_vocab.txt")
TF_ARGS = ("--vocab_file", VOCAB, "--max_seq_length", "64", "--max_predictions_per_seq", "10",
           "--dupe_factor", "2", "--num_shards", "4", "--num_doc_shards", "4")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("tf")
    return out, build(out, *TF_ARGS, "--token_boundary")


def test_manifest_tfrecords_section(demo):
    out, m = demo
    t = m["tfrecords"]
    assert t["max_seq_length"] == 64 and t["max_predictions_per_seq"] == 10
    assert t["vocab_sha256"] == file_sha256(VOCAB) and t["vocab_size"] == 4000
    assert t["pair_task"] == "sop" and t["masking"]["strategy"] == "wwm" and t["seed"] == 12345
    counts = [s["count"] for s in t["shards"]]
    assert [s["file"] for s in t["shards"]] == [f"part-{i:05d}-of-00004.tfrecord" for i in range(4)]
    assert max(counts) - min(counts) <= 1
    assert sum(counts) == t["num_instances"] == m["counters"]["pretrain:instances"] > 1000
    assert sum(t["label_balance"].values()) == t["num_instances"]
    assert sum(t["masked_tokens_histogram"].values()) == t["num_instances"]
    assert set(t["feature_spec"]) == {"input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                                      "masked_lm_ids", "masked_lm_weights", "next_sentence_labels",
                                      "token_boundary"}
    assert m["segmenter"]["name"] == "jieba"
    # Every kept document either produced instances or was rejected with a reason.
    c = m["counters"]
    assert c["pretrain:docs"] == m["counts"]["kept"]


def test_shards_parse_with_bert_feature_spec(demo):
    tf = pytest.importorskip("tensorflow")
    out, m = demo
    L, P = 64, 10
    spec = {
        "input_ids": tf.io.FixedLenFeature([L], tf.int64),
        "input_mask": tf.io.FixedLenFeature([L], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([L], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([P], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([P], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([P], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
        "token_boundary": tf.io.FixedLenFeature([L], tf.int64),
    }
    vocab = [line.rstrip("\n") for line in open(VOCAB, encoding="utf-8")]
    special = {vocab.index(t) for t in ("[CLS]", "[SEP]", "[PAD]")}
    files = sorted(glob.glob(str(out / "tfrecords" / "*.tfrecord")))
    n = 0
    for raw in tf.data.TFRecordDataset(files):
        ex = {k: v.numpy().tolist() for k, v in tf.io.parse_single_example(raw, spec).items()}
        n += 1
        ids, mask = ex["input_ids"], ex["input_mask"]
        real = sum(mask)
        assert mask == [1] * real + [0] * (L - real) and ids[real:] == [0] * (L - real)
        assert ids[0] == vocab.index("[CLS]") and ids[real - 1] == vocab.index("[SEP]")
        assert max(ids) < len(vocab)
        w = ex["masked_lm_weights"]
        k = int(sum(w))
        pos = ex["masked_lm_positions"][:k]
        assert pos == sorted(pos) and all(0 < p < real for p in pos)
        assert ex["masked_lm_positions"][k:] == [0] * (P - k)
        for p, label in zip(pos, ex["masked_lm_ids"][:k]):
            assert ids[p] not in special or ids[p] == vocab.index("[MASK]")
            tok = vocab[label]
            # Never a '##' + CJK label: Chinese labels are plain character ids.
            assert not (tok.startswith("##") and len(tok) == 3 and "\u4e00" <= tok[2] <= "\u9fff")
        assert ex["next_sentence_labels"][0] in (0, 1)
    assert n == m["tfrecords"]["num_instances"]


def test_bad_vocab_fails_before_running(tmp_path):
    bad = tmp_path / "vocab.txt"
    bad.write_text("[PAD]\n[UNK]\n[UNK]\n", encoding="utf-8")
    with pytest.raises(BuildError, match="vocab"):
        build(tmp_path / "out", "--vocab_file", str(bad))
    assert not (tmp_path / "out" / "manifest.json").exists()
    with pytest.raises(BuildError, match="does not exist"):
        build(tmp_path / "out", "--vocab_file", str(tmp_path / "missing.txt"))


@pytest.mark.slow
def test_tfrecords_identical_across_reruns_and_workers(tmp_path, demo):
    out, _ = demo
    build(tmp_path / "b", *TF_ARGS, "--token_boundary", "--direct_num_workers", "2",
          "--direct_running_mode", "multi_processing")
    a = digest_tree(out, ("tfrecords", "docs", "rejects"))
    assert a and a == digest_tree(tmp_path / "b", ("tfrecords", "docs", "rejects"))


def test_resume_skips_finished_stages_and_reruns_changed_ones(tmp_path, demo):
    out, m = demo
    import shutil
    work = tmp_path / "copy"
    shutil.copytree(out, work)
    before = digest_tree(work, ("tfrecords",))
    m2 = build(work, *TF_ARGS, "--token_boundary", "--resume")
    assert digest_tree(work, ("tfrecords",)) == before
    assert m2["tfrecords"]["num_instances"] == m["tfrecords"]["num_instances"]
    stage = json.loads((work / "stages" / "tfrecords.json").read_text())
    # A changed pretraining option reruns only the tfrecords stage.
    clean_before = (work / "stages" / "clean.json").read_bytes()
    m3 = build(work, *TF_ARGS, "--resume", "--pair_task", "nsp")
    assert (work / "stages" / "clean.json").read_bytes() == clean_before
    assert json.loads((work / "stages" / "tfrecords.json").read_text())["config_hash"] != stage["config_hash"]
    assert m3["tfrecords"]["pair_task"] == "nsp"


def test_stats_json_and_html_report(demo, tmp_path):
    from pipelines import report
    out, m = demo
    stats = json.loads((out / "stats.json").read_text())
    assert stats["counts"] == m["counts"]
    clean = stats["stages"]["clean"]
    assert sum(clean["docs_in"].values()) + m["counters"].get("read:rejected:undecodable", 0) == m["counts"]["read"]
    assert sum(clean["docs_out"].values()) == m["counters"]["clean:kept"]
    assert sum(stats["stages"]["dedup"]["docs_out"].values()) == m["counts"]["kept"]
    t = stats["stages"]["tfrecords"]
    assert sum(t["label"].values()) == m["tfrecords"]["num_instances"]
    assert 0 <= stats["vocab"]["unk_rate"] < 0.01
    assert report.main([str(out), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= 8
    assert "records removed, by reason" not in page or "<img" in page
    assert report.main([str(tmp_path / "nowhere")]) == 2


@pytest.mark.slow
def test_killed_in_late_stage_then_resumed_equals_clean_run(tmp_path, demo):
    import os
    import signal
    import subprocess
    import sys
    import time
    clean_out, _ = demo
    out = tmp_path / "killed"
    # Leftovers of an older run with another shard count must not survive.
    (out / "tfrecords").mkdir(parents=True)
    (out / "tfrecords" / "part-00000-of-00016.tfrecord").write_bytes(b"old")
    cmd = [sys.executable, "-m", "pipelines.build", *SAMPLE_ARGS, "--output", str(out), *TF_ARGS,
           "--token_boundary", "--progress", "false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while not (out / "stages" / "dedup.json").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # inside the tfrecords stage
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "stages" / "tfrecords.json").exists()
    m = build(out, *TF_ARGS, "--token_boundary", "--resume")
    assert m["tfrecords"]["num_instances"] > 0
    assert digest_tree(out, ("tfrecords", "docs")) == digest_tree(clean_out, ("tfrecords", "docs"))
    assert not (out / "tfrecords" / "part-00000-of-00016.tfrecord").exists()
