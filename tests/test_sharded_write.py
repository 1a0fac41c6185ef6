"""ShardedWrite: balanced, sorted, byte-identical whatever the bundling."""

import gzip
import hashlib
import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from corpusflow.document import stable_hash64
from corpusflow.io.tfrecord import read_tfrecords
from pipelines.sharded_write import ShardedWrite, Spill, cleanup, merge_runs, shard_of_rank


def _run(out_dir, n, num_shards, spill_bytes, fmt="tfrecord", gz=False, workers=1,
         max_fan_in=64):
    opts = PipelineOptions(direct_num_workers=workers,
                           direct_running_mode="multi_processing" if workers > 1 else "in_memory")
    prefix = os.path.join(out_dir, "part")
    with beam.Pipeline(runner=FnApiRunner(), options=opts) as p:
        infos = (p | beam.Create(range(n), reshuffle=False)
                 | beam.Map(lambda i: (stable_hash64(str(i)), f"rec{i}".encode()))
                 | ShardedWrite(prefix, num_shards, fmt=fmt, gzip_output=gz,
                                spill_bytes=spill_bytes, num_buckets=3, max_fan_in=max_fan_in))
        infos | beam.Map(lambda d: None)
    cleanup(os.path.join(out_dir, "_tmp-part"))
    return sorted(os.listdir(out_dir))


def _read(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return list(read_tfrecords(f))


def test_shard_of_rank_balanced():
    for total in (1, 5, 8, 97, 1000):
        counts = [0] * 8
        for r in range(total):
            counts[shard_of_rank(r, total, 8)] += 1
        assert max(counts) - min(counts) <= 1
        assert sum(counts) == total


def test_balanced_sorted_and_independent_of_spill_size(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    files_a = _run(str(a), 1000, 8, spill_bytes=1 << 30)
    files_b = _run(str(b), 1000, 8, spill_bytes=500)  # many tiny runs
    assert files_a == files_b == [f"part-{i:05d}-of-00008.tfrecord" for i in range(8)]
    all_keys = []
    for name in files_a:
        ra, rb = _read(str(a / name)), _read(str(b / name))
        assert ra == rb
        assert len(ra) in (125,)
        keys = [stable_hash64(r.decode()[3:]) for r in ra]
        assert keys == sorted(keys)
        all_keys.extend(keys)
    assert len(set(all_keys)) == 1000
    # Shards are consecutive ranges of the global key order.
    assert all_keys == sorted(all_keys)


def test_merging_in_passes_gives_the_same_bytes(tmp_path):
    """~140 runs per bucket merged 4 at a time (four passes) == one 140-way merge."""
    a, b = tmp_path / "a", tmp_path / "b"
    files_a = _run(str(a), 3000, 5, spill_bytes=400)
    files_b = _run(str(b), 3000, 5, spill_bytes=400, max_fan_in=4)
    assert files_a == files_b
    for name in files_a:
        assert _read(str(a / name)) == _read(str(b / name))
    assert not (b / "_tmp-part").exists()


def test_merge_runs_equals_one_merge_and_removes_its_intermediates(tmp_path):
    import random
    rng = random.Random(2)
    records = [(rng.getrandbits(64) % 50, bytes([rng.randrange(3)]) * rng.randrange(4))
               for _ in range(2000)]
    spill = Spill(str(tmp_path), 1, 300)
    spill.start_bundle()
    runs = [r for rec in records for r in spill.process(rec)]
    runs += [w.value for w in spill.finish_bundle()]
    paths = [p for _, (p, _) in runs]
    assert len(paths) > 100
    for fan_in in (2, 3, 64, 1000):
        assert list(merge_runs(paths, max_fan_in=fan_in)) == sorted(records)
    assert not os.listdir(tmp_path / "merged")  # every intermediate run removed
    assert sorted(os.listdir(tmp_path / "runs")) == sorted(os.path.basename(p) for p in paths)


def test_fewer_records_than_shards_gives_empty_shards(tmp_path):
    files = _run(str(tmp_path), 3, 8, spill_bytes=1 << 20)
    counts = [len(_read(str(tmp_path / f))) for f in files]
    assert len(files) == 8 and sum(counts) == 3 and max(counts) == 1


def test_gzip_jsonl_deterministic(tmp_path):
    digests = []
    for d in ("x", "y"):
        out = tmp_path / d
        files = _run(str(out), 200, 4, spill_bytes=2000, fmt="jsonl", gz=True)
        assert files[0].endswith(".jsonl.gz")
        digests.append([hashlib.sha256((out / f).read_bytes()).hexdigest() for f in files])
        lines = sum(len(gzip.open(out / f).read().splitlines()) for f in files)
        assert lines == 200
    assert digests[0] == digests[1]


@pytest.mark.slow
def test_two_workers_same_bytes(tmp_path):
    _run(str(tmp_path / "one"), 500, 4, spill_bytes=3000)
    _run(str(tmp_path / "two"), 500, 4, spill_bytes=3000, workers=2)
    for f in os.listdir(tmp_path / "one"):
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes()


def test_orphan_runs_of_a_failed_attempt_are_ignored(tmp_path):
    """A retried bundle leaves its first attempt's runs on disk; only committed
    bundles' runs are merged, so nothing is duplicated."""
    tmp = tmp_path / "_tmp-part" / "runs"
    tmp.mkdir(parents=True)
    import struct
    orphan = b"".join(struct.pack(">QI", k, 5) + b"ghost" for k in (1, 2, 3))
    for b in range(3):
        (tmp / f"b{b:05d}-deadbeef.run").write_bytes(orphan)
    files = _run(str(tmp_path), 100, 4, spill_bytes=1 << 20)
    records = [r for f in files for r in _read(str(tmp_path / f))]
    assert len(records) == 100 and b"ghost" not in records


def test_existing_final_shard_is_replaced(tmp_path):
    (tmp_path / "part-00000-of-00002.tfrecord").write_bytes(b"stale bytes")
    files = _run(str(tmp_path), 10, 2, spill_bytes=1 << 20)
    assert files == ["part-00000-of-00002.tfrecord", "part-00001-of-00002.tfrecord"]
    assert sum(len(_read(str(tmp_path / f))) for f in files) == 10
