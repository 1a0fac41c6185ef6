"""Which 64-bit keys occur more than once, and who owns each: memory-flat on the local runner.

Exact and line dedup need, per key (a text or line hash), the number of records
that carry it and the smallest record key among them (``stages.MinIdCount``).
On Dataflow that is a ``CombinePerKey``: the service shuffles on disk. The
local FnApiRunner, though, holds every grouped element in memory, one per
distinct line of the corpus, so its peak memory grew with the input.
``RepeatedKeys(local=True)`` groups through sorted run files instead, as
``sharded_write`` does for shards:

1. spill - each bundle buffers ``(key, record key)`` pairs (bounded), sorts them
           and writes one run file per key-range bucket;
2. merge - per bucket, the runs are k-way merged (streaming) and each key's
           count and smallest record key are emitted when the count is >= 2.

Both forms emit exactly ``(key, (count, min record key))`` for the keys seen at
least twice; only those (the repeated ones) are ever held in memory.
"""

from __future__ import annotations

import heapq
import json
import uuid

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

# The run-file format (u64 key, u32 length, payload) is sharded_write's.
from pipelines.sharded_write import _HDR, _open_write, _read_run
from pipelines.stages import MinIdCount


class _SpillPairs(beam.DoFn):
    def __init__(self, tmp_dir: str, num_buckets: int, max_pairs: int):
        self.tmp_dir = tmp_dir
        self.num_buckets = num_buckets
        self.max_pairs = max_pairs

    def start_bundle(self) -> None:
        self._buf: dict[int, list[tuple[int, bytes]]] = {}
        self._n = 0

    def process(self, kv):
        key, rec = kv
        # The record key travels encoded. Not with orjson: its small outputs keep
        # a ~4 KB allocation each (measured), which would multiply this buffer.
        self._buf.setdefault((key * self.num_buckets) >> 64, []).append(
            (key, json.dumps(rec, ensure_ascii=False).encode("utf-8")))
        self._n += 1
        if self._n >= self.max_pairs:
            yield from self._flush()

    def finish_bundle(self):
        for item in self._flush():
            yield GlobalWindows.windowed_value(item)

    def _flush(self):
        for bucket in sorted(self._buf):
            items = self._buf[bucket]
            items.sort()
            path = f"{self.tmp_dir}/b{bucket:05d}-{uuid.uuid4().hex}.run"
            with _open_write(path) as f:
                for key, rec in items:
                    f.write(_HDR.pack(key, len(rec)))
                    f.write(rec)
            yield bucket, path
        self._buf = {}
        self._n = 0


def _record_key(raw: bytes) -> tuple:
    return tuple(json.loads(raw))


class _MergeRepeated(beam.DoFn):
    def process(self, element):
        _, paths = element
        merged = heapq.merge(*[_read_run(p) for p in sorted(paths)])
        cur, n, best, first = None, 0, None, b""
        for key, raw in merged:
            if key != cur:
                if n >= 2:
                    yield cur, (n, best)
                cur, n, best, first = key, 0, None, raw
            elif best is None:  # a second record: now the order matters
                best = _record_key(first)
            n += 1
            if best is not None:
                # Smallest record key as MinIdCount orders them (tuples), not bytes.
                rec = _record_key(raw)
                if rec < best:
                    best = rec
        if n >= 2:
            yield cur, (n, best)


class RepeatedKeys(beam.PTransform):
    """``(key, record key)`` -> ``(key, (count, smallest record key))`` for count >= 2."""

    def __init__(self, tmp_dir: str, local: bool, num_buckets: int = 16,
                 max_pairs: int = 200_000):
        super().__init__()
        self.tmp_dir = tmp_dir
        self.local = local
        self.num_buckets = num_buckets
        self.max_pairs = max_pairs

    def expand(self, pcoll):
        if not self.local:
            return (pcoll | "Combine" >> beam.CombinePerKey(MinIdCount())
                    | "Repeated" >> beam.Filter(lambda kv: kv[1][0] >= 2))
        return (pcoll
                | "Spill" >> beam.ParDo(_SpillPairs(self.tmp_dir, self.num_buckets, self.max_pairs))
                | "GroupRuns" >> beam.GroupByKey()
                | "Merge" >> beam.ParDo(_MergeRepeated()))
