"""Issue 3: raw sample -> TFRecords through pipelines.build, parsed back with TF."""

from __future__ import annotations

import glob
import json

import pytest

from pipelines.build import BuildError
from pipelines.integrity import file_sha256
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


def _stage_bytes(out) -> dict:
    return {st: (out / "stages" / f"{st}.json").read_bytes()
            for st in ("clean", "dedup", "segment", "instances", "tfrecords")}


def _records(out) -> list:
    """Every TFRecord payload of a build, sorted (shard-count independent)."""
    from corpusflow.io.tfrecord import read_tfrecords
    recs = []
    for f in sorted((out / "tfrecords").glob("*.tfrecord")):
        with open(f, "rb") as fh:
            recs += list(read_tfrecords(fh))
    return sorted(recs)


def test_resume_skips_finished_stages_and_reruns_changed_ones(tmp_path, demo):
    out, m = demo
    import shutil
    work = tmp_path / "copy"
    shutil.copytree(out, work)
    # The instances runs were removed after the write (no --keep_instance_runs).
    assert not (work / "stages" / "instances").exists()
    before, stage_before = digest_tree(work, ("tfrecords",)), _stage_bytes(work)
    m2 = build(work, *TF_ARGS, "--token_boundary", "--resume")
    assert digest_tree(work, ("tfrecords",)) == before
    assert m2["tfrecords"]["num_instances"] == m["tfrecords"]["num_instances"]
    assert _stage_bytes(work) == stage_before  # nothing ran, runs were not needed

    # A masking option reruns instances and write, never the segmenter.
    m3 = build(work, *TF_ARGS, "--resume", "--pair_task", "nsp", "--keep_instance_runs")
    after = _stage_bytes(work)
    assert [st for st in after if after[st] != stage_before[st]] == ["instances", "tfrecords"]
    assert m3["tfrecords"]["pair_task"] == "nsp"
    assert m3["counters"]["segment:docs"] == m["counters"]["segment:docs"]

    # A shard count with the runs kept re-merges only.
    assert (work / "stages" / "instances" / "runs").is_dir()
    build(work, *TF_ARGS[:-4], "--num_shards", "3", "--num_doc_shards", "4", "--resume",
          "--pair_task", "nsp", "--keep_instance_runs")
    again = _stage_bytes(work)
    assert [st for st in again if again[st] != after[st]] == ["tfrecords"]
    assert len(list((work / "tfrecords").glob("part-*-of-00003.tfrecord"))) == 3
    assert not list((work / "tfrecords").glob("part-*-of-00004.tfrecord"))
    nsp = tmp_path / "nsp"
    build(nsp, *TF_ARGS, "--pair_task", "nsp")
    assert _records(work) == _records(nsp)

    # A docs shard's word starts changed behind the manifest's back: not
    # needed while the TFRecords are current, rebuilt once they are needed.
    words = sorted((work / "stages" / "segment").glob("words-*.words"))
    words[0].write_bytes(words[0].read_bytes()[:-1])
    build(work, *TF_ARGS[:-4], "--num_shards", "3", "--num_doc_shards", "4", "--resume",
          "--pair_task", "nsp")
    assert _stage_bytes(work) == again
    build(work, *TF_ARGS[:-4], "--num_shards", "3", "--num_doc_shards", "4", "--resume",
          "--token_boundary")
    final = _stage_bytes(work)
    assert [st for st in final if final[st] != again[st]] == ["segment", "instances", "tfrecords"]
    assert _records(work) == _records(out)


def test_stats_json_and_html_report(demo, tmp_path):
    from pipelines import report
    out, m = demo
    stats = json.loads((out / "stats.json").read_text())
    assert stats["counts"] == m["counts"]
    clean = stats["stages"]["clean"]
    assert sum(clean["docs_in"].values()) + m["counters"].get("read:rejected:undecodable", 0) == m["counts"]["read"]
    assert sum(clean["docs_out"].values()) == m["counters"]["clean:kept"]
    assert sum(stats["stages"]["dedup"]["docs_out"].values()) == m["counts"]["kept"]
    t = stats["stages"]["instances"]
    assert sum(t["label"].values()) == m["tfrecords"]["num_instances"]
    assert stats["stages"]["instances"]["runs"]["count"] == m["tfrecords"]["num_instances"]
    assert sum(v["count"] for v in stats["stages"]["tfrecords"]["shards"].values()) \
        == m["tfrecords"]["num_instances"]
    seg = stats["stages"]["segment"]
    assert sum(seg["sentence_chars"].values()) == m["counters"]["segment:sentences"] \
        == m["counters"]["pretrain:sentences"]
    assert 0 <= stats["vocab"]["unk_rate"] < 0.01
    assert report.main([str(out), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= 8
    assert "records removed, by reason" not in page or "<img" in page
    assert report.main([str(tmp_path / "nowhere")]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("after", ["segment", "instances"])
def test_killed_in_late_stage_then_resumed_equals_clean_run(tmp_path, demo, after):
    import os
    import signal
    import subprocess
    import sys
    import time
    clean_out, _ = demo
    out = tmp_path / "killed"
    # Leftovers of an older run with another shard count must not survive (a
    # directory holding another run's files needs --overwrite).
    (out / "tfrecords").mkdir(parents=True)
    (out / "tfrecords" / "part-00000-of-00016.tfrecord").write_bytes(b"old")
    cmd = [sys.executable, "-m", "pipelines.build", *SAMPLE_ARGS, "--output", str(out), *TF_ARGS,
           "--token_boundary", "--progress", "false", "--overwrite"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    # Killed as soon as the stage before is finished: inside the next one.
    while not (out / "stages" / f"{after}.json").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "stages" / "tfrecords.json").exists()
    finished = {st: (out / "stages" / f"{st}.json").read_bytes()
                for st in ("clean", "dedup", "segment", "instances")
                if (out / "stages" / f"{st}.json").exists()}
    m = build(out, *TF_ARGS, "--token_boundary", "--resume")
    assert m["tfrecords"]["num_instances"] > 0
    assert digest_tree(out, ("tfrecords", "docs")) == digest_tree(clean_out, ("tfrecords", "docs"))
    assert not (out / "tfrecords" / "part-00000-of-00016.tfrecord").exists()
    # The stages finished before the kill were reused, not rerun.
    assert after in finished
    for st, data in finished.items():
        assert (out / "stages" / f"{st}.json").read_bytes() == data, st


def test_attempts_that_died_leave_no_trace(tmp_path, demo, monkeypatch):
    """What a worker killed mid-bundle leaves behind (a half-written word-starts
    temp file, a spilled run its bundle never reported) is neither read nor kept."""
    import struct
    from pipelines import sharded_write
    from pipelines.stages import segment as stages
    from pipelines.sharded_write import open_write, shard_name
    clean_out, _ = demo
    seg_process, spill_flush = stages.SegmentDocs.process, sharded_write.Spill._flush
    dead: list = []

    def segment_after_dead_attempt(self, element):
        index, _ = element
        dead.append("words")
        tmp = f"{shard_name(self.prefix, index, self.num_shards, '.words')}.tmp-deadattempt"
        with open_write(tmp) as f:
            f.write(b"CFWORDS1 half a rec")
        yield from seg_process(self, element)

    def flush_after_dead_attempt(self):
        dead.append(self.tmp_dir)
        with open_write(f"{self.tmp_dir}/runs/b00000-deadattempt.run") as f:
            f.write(struct.pack(">QI", 1, 5) + b"ghost")
        yield from spill_flush(self)

    monkeypatch.setattr(stages.SegmentDocs, "process", segment_after_dead_attempt)
    monkeypatch.setattr(sharded_write.Spill, "_flush", flush_after_dead_attempt)
    out = tmp_path / "o"
    build(out, *TF_ARGS, "--token_boundary", "--keep_instance_runs")
    assert dead.count("words") == 4 and str(out / "stages" / "instances") in dead
    assert digest_tree(out, ("tfrecords", "docs")) == digest_tree(clean_out, ("tfrecords", "docs"))
    assert sorted(p.name for p in (out / "stages" / "segment").iterdir()) == [
        f"words-{i:05d}-of-00004.words" for i in range(4)]
    listed = {x["file"] for x in json.loads((out / "stages" / "instances_shards.json").read_text())}
    assert {p.name for p in (out / "stages" / "instances" / "runs").iterdir()} == listed
    assert listed and not any("deadattempt" in f for f in listed)
