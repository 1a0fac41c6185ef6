"""Which 64-bit keys occur more than once, and who owns each: memory-flat on the local runner.

Exact and line dedup need, per key (a text or line hash), the number of records
that carry it and the smallest record key among them (``stages.MinIdCount``).
On Dataflow that is a ``CombinePerKey``: the service shuffles on disk. The
local FnApiRunner, though, holds every grouped element in memory, one per
distinct line of the corpus, so its peak memory grew with the input.
``RepeatedKeys(local=True)`` groups through sorted run files instead, as
``sharded_write`` does for shards:

1. spill - each bundle buffers ``(key, encoded record key)`` pairs (bounded),
           sorts them and writes one run file per key-range bucket
           (``sharded_write``'s spill step);
2. merge - per bucket, the runs are k-way merged (streaming) and each key's
           count and smallest record key are emitted when the count is >= 2.

Both forms emit exactly ``(key, (count, min record key))`` for the keys seen at
least twice; only those (the repeated ones) are ever held in memory.
"""

from __future__ import annotations

import heapq
import json

import apache_beam as beam

# Runs are spilled and read as sharded_write's (u64 key, u32 length, payload).
from pipelines.sharded_write import _read_run, _Spill
from pipelines.stages import MinIdCount


def _encode(kv) -> tuple[int, bytes]:
    # The record key travels encoded. Not with orjson: its small outputs keep
    # a ~4 KB allocation each (measured), which would multiply the spill buffer.
    key, rec = kv
    return key, json.dumps(rec, ensure_ascii=False).encode("utf-8")


def _record_key(raw: bytes) -> tuple:
    return tuple(json.loads(raw))


class _MergeRepeated(beam.DoFn):
    def process(self, element):
        _, runs = element
        merged = heapq.merge(*[_read_run(path) for path, _ in sorted(runs)])
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
                 spill_bytes: int = 16 << 20):
        super().__init__()
        self.tmp_dir = tmp_dir
        self.local = local
        self.num_buckets = num_buckets
        # Counted as payload + 64 bytes a pair: ~170 bytes of Python objects each.
        self.spill_bytes = spill_bytes

    def expand(self, pcoll):
        if not self.local:
            return (pcoll | "Combine" >> beam.CombinePerKey(MinIdCount())
                    | "Repeated" >> beam.Filter(lambda kv: kv[1][0] >= 2))
        return (pcoll
                | "Encode" >> beam.Map(_encode)
                | "Spill" >> beam.ParDo(_Spill(self.tmp_dir, self.num_buckets, self.spill_bytes))
                | "GroupRuns" >> beam.GroupByKey()
                | "Merge" >> beam.ParDo(_MergeRepeated()))
