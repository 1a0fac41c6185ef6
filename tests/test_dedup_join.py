"""dedup_join: order-preserving record encoding, decisions from spilled runs, the reader."""

from __future__ import annotations

import ast
import collections
import glob
import random

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from corpusflow.document import record_key, stable_hash64
from pipelines import dedup_join as dj
from pipelines.runners import make_runner
from pipelines.sharded_write import Spill, read_run


def _recs(n: int, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    alphabet = ["a", "b", "\x00", "中", "文", "\U0001f600", ":", "\x01", "é"]
    out = set()
    while len(out) < n:
        doc_id = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 4)))
        file = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 3)))
        out.add((doc_id, file, rng.randrange(-3, 2**40)))
    return sorted(out)


def test_encoding_orders_bytes_as_tuples_and_round_trips_the_id():
    recs = _recs(3000, seed=3)
    shuffled = recs[:]
    random.Random(4).shuffle(shuffled)
    assert sorted(shuffled, key=dj.encode_record) == recs
    for r in recs[:200]:
        assert dj.record_id(dj.encode_record(r)) == r[0]
        assert dj.record_id(dj.member(r, 2**64 - 1)[:-8]) == r[0]


def test_split_decisions_takes_only_this_records_and_this_ids():
    a, b = ("x", "f", 1), ("x", "f", 10)
    payloads = [dj.encode_record(a) + dj.EXACT + b"owner",
                dj.encode_record(b) + dj.LINE + b"12345678",
                dj.encode_record(a) + dj.LINE + b"abcdefgh",
                dj.id_prefix("x") + dj.NEAR + b"{}",
                dj.id_prefix("xy") + dj.NEAR + b"{}"]
    assert dj.split_decisions(payloads, a, "x") == {
        dj.EXACT: [b"owner"], dj.LINE: [b"abcdefgh"], dj.NEAR: [b"{}"]}
    assert dj.split_decisions(payloads, b, "x") == {dj.LINE: [b"12345678"], dj.NEAR: [b"{}"]}
    assert dj.split_decisions([], a, "x") == {}


def _pairs(n: int, seed: int) -> list:
    """(key, member) pairs: few keys so groups form, records repeated per key at times."""
    rng = random.Random(seed)
    keys = [rng.getrandbits(64) for _ in range(n // 4)] + [0, 2**64 - 1]
    recs = [(f"doc{i}", f"f{i % 3}.jsonl", i % 7) for i in range(60)]
    out = []
    for _ in range(n):
        k = keys[int(rng.random() * len(keys))]
        r = recs[int(rng.random() * len(recs))]
        out.append((k, r))
    return out + [(5, recs[0]), (5, recs[0])]  # one record twice under a key: no decision


def _expected(pairs: list, kind: bytes) -> tuple[list, list]:
    groups: dict = {}
    for k, r in pairs:
        groups.setdefault(k, []).append(r)
    decisions, sizes = [], []
    for k, rs in groups.items():
        owner = min(rs)
        if len(rs) >= 2 and kind == dj.EXACT:
            sizes.append(len(rs))
        for r in rs:
            if r == owner:
                continue
            data = owner[0].encode() if kind == dj.EXACT else k.to_bytes(8, "big")
            decisions.append((stable_hash64(r[0]), dj.encode_record(r) + kind + data))
    return decisions, sizes


@pytest.mark.parametrize("kind", [dj.EXACT, dj.LINE])
def test_decisions_equal_a_brute_force_grouping(tmp_path, kind):
    pairs = _pairs(2500, seed=7)
    want, sizes = _expected(pairs, kind)
    assert len(want) > 500 and max(sizes or [3]) >= 3
    with BeamTestPipeline(runner=make_runner(PipelineOptions())) as p:
        # Created as text: Create would infer a VarIntCoder for the keys, which
        # cannot hold keys above 2**63 (the pipeline's keys come from a Map, as here).
        members = (p | beam.Create([repr(x) for x in pairs], reshuffle=False)
                   | beam.Map(ast.literal_eval)
                   | beam.Map(lambda kv: (kv[0], dj.member(kv[1], stable_hash64(kv[1][0])))))
        # spill_bytes=8000: a few dozen pairs a run, so each bucket merges many runs.
        out = members | dj.Decisions(str(tmp_path / "t"), kind, num_buckets=4, spill_bytes=8000)
        assert_that(out[dj.SIZES] | beam.CombinePerKey(sum),
                    equal_to(sorted(collections.Counter(sizes).items())), label="sizes")
    got = [rec for path in glob.glob(str(tmp_path / "t" / "decisions" / "runs" / "*.run"))
           for rec in read_run(path)]
    assert sorted(got) == sorted(want)


def _spill(tmp_path, records: list, num_buckets: int, spill_bytes: int) -> list:
    fn = Spill(str(tmp_path / "d"), num_buckets, spill_bytes)
    fn.start_bundle()
    runs = []
    for r in records:
        runs.extend(fn.process(r))
    runs.extend(w.value for w in fn.finish_bundle())
    return runs


def test_reader_returns_each_keys_decisions_in_order(tmp_path):
    rng = random.Random(11)
    keys = sorted({rng.getrandbits(64) for _ in range(400)} | {0, 2**64 - 1})
    records = [(k, f"{k}:{j}".encode()) for k in keys for j in range(k % 3)]
    rng.shuffle(records)
    runs = _spill(tmp_path, records, num_buckets=5, spill_bytes=2000)
    assert len(runs) > 20
    reader = dj.DecisionReader(runs, 5)
    asked = keys[::2] + [keys[-1]]  # skips half the keys, and whole stretches of a bucket
    for k in sorted(set(asked)):
        assert sorted(reader.take(k)) == [f"{k}:{j}".encode() for j in range(k % 3)]
        assert reader.take(k) == reader.take(k)  # two records with one id get the same list
    with pytest.raises(ValueError, match="out of sort-key order"):
        reader.take(keys[0])  # 0, after the largest key


def test_reader_with_no_runs_has_no_decisions():
    reader = dj.DecisionReader([], dj.NUM_BUCKETS)
    assert reader.take(0) == [] and reader.take(2**64 - 1) == []


def _reference_dedup(docs: list[dict], min_chars: int, line_min_chars: int) -> dict:
    """The dedup semantics written plainly, in memory: exact duplicates out first, then
    repeated lines among the survivors (each line kept by its smallest record)."""
    from corpusflow.dedup.exact import line_keys, remove_lines, text_key
    owner: dict = {}
    for d in docs:
        k = text_key(d["text"])
        owner[k] = min(owner.get(k, record_key(d)), record_key(d))
    survivors = [d for d in docs if owner[text_key(d["text"])] == record_key(d)]
    line_owner: dict = {}
    for d in survivors:
        for _, k in line_keys(d["text"], line_min_chars):
            line_owner[k] = min(line_owner.get(k, record_key(d)), record_key(d))
    kept, removed, short = {}, 0, 0
    for d in survivors:
        drop = [i for i, k in line_keys(d["text"], line_min_chars)
                if line_owner[k] != record_key(d)]
        text = remove_lines(d["text"], drop)
        removed += len(drop)
        if len("".join(text.split())) < min_chars:
            short += 1
            continue
        kept[record_key(d)] = text
    return {"kept": kept, "exact": len(docs) - len(survivors), "lines_removed": removed,
            "too_short": short}


def test_pipeline_dedup_equals_the_plain_reference(tmp_path):
    """Random docs built from a small pool of real lines: many exact copies (some under
    the same id in a second file) and many shared lines, through the whole dedup stage."""
    import gzip
    import json
    from pathlib import Path

    from pipelines.build import run

    pool = []
    with open(Path(__file__).resolve().parent.parent / "data" / "sample" / "zhwiki_sample.jsonl",
              encoding="utf-8") as f:
        for line in f:
            pool.extend(s for s in json.loads(line)["text"].split("\n") if 15 <= len(s) <= 80)
    pool = sorted(set(pool))[:40]
    assert len(pool) == 40
    rng = random.Random(5)
    docs_a, docs_b = [], []
    for i in range(150):
        if docs_a and rng.random() < 0.2:  # an exact copy of an earlier doc, new id
            text = rng.choice(docs_a)["text"]
        else:
            text = "\n".join(rng.sample(pool, rng.randrange(1, 5)))
        docs_a.append({"id": f"d{i:03d}", "text": text})
        if rng.random() < 0.1:  # the same article again, from another dump
            docs_b.append({"id": f"d{i:03d}", "text": text})
    for name, docs in (("a.jsonl", docs_a), ("b.jsonl", docs_b)):
        (tmp_path / name).write_text("".join(json.dumps(d, ensure_ascii=False) + "\n"
                                             for d in docs), encoding="utf-8")
    out = tmp_path / "out"
    m = run(["--input", str(tmp_path / "*.jsonl"), "--output", str(out), "--progress", "false",
             "--stop_after", "dedup", "--num_doc_shards", "3"])
    cleaned = []
    for p in sorted(out.glob("stages/clean/docs-*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            cleaned.extend(json.loads(line) for line in f)
    assert len(cleaned) == len(docs_a) + len(docs_b)  # cleaning kept every doc
    ref = _reference_dedup(cleaned, min_chars=20, line_min_chars=10)
    got = {}
    for p in sorted(out.glob("docs/docs-*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                got[record_key(d)] = d["text"]
    assert got == ref["kept"]
    c = m["counters"]
    assert ref["exact"] >= 30 and ref["lines_removed"] >= 100 and ref["too_short"] >= 1
    assert c["dedup:duplicate:exact"] == ref["exact"]
    assert c["dedup:lines:removed"] == ref["lines_removed"]
    assert c["dedup:filtered:too_short_after_dedup"] == ref["too_short"]
    assert c["dedup:kept"] == len(ref["kept"])
