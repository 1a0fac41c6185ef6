"""Exact and line dedup as a disk-backed join: memory flat in input size on any runner.

Side-input dictionaries of repeated texts and lines grow with the number of
duplicates (on a news crawl, millions of repeated lines), and every worker holds
them whole. Here every decision is a small record in sorted run files instead:

1. keys      - one pass over the clean shards emits ``(text key, member)`` and
               ``(line key, member)``; a member is the document's record key
               (encoded so that byte order is ``document.record_key`` order) and its
               shard sort key. They are spilled as sorted runs (``sharded_write``).
2. decide    - per key bucket the runs are k-way merged. Members of one key arrive
               together, smallest record first: that one keeps the text or line, and
               every later member gets a decision record ``(its sort key, its record
               + kind + data)``, spilled again as sorted runs.
3. apply     - one pass per clean shard. A shard's documents are in sort-key order
               (``ShardedWrite``), so the merged decision runs are read alongside it,
               one key at a time, and applied to the document they name.

Line groups include exact duplicates: a duplicate's owner has the same lines and a
smaller record key, so it is in every one of those groups and line owners are the
same as if the duplicates had been removed first. That removes the exact -> line
dependency, so a single read pass yields both kinds of keys. With near dedup or
decontamination on, line keys come from a later read instead, of the documents
that survive every whole-document decision (``pipelines.build.run_dedup``), so a
document removed whole never owns a line.

Near-duplicate and decontamination results (keyed by document id) become
decision records the same way (``id_decisions``).
"""

from __future__ import annotations

import json
import struct
from typing import Iterable, Iterator, Optional

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindows

from corpusflow.dedup.exact import text_and_line_keys
from corpusflow.document import record_key, stable_hash64
from pipelines.sharded_write import Spill, merge_runs

EXACT = b"E"
LINE = b"L"
NEAR = b"N"
DECONTAM = b"C"
_ID = b"\xff"  # never the first byte of UTF-8 text: marks a decision naming an id
_END = b"\x00\x00"
_U64 = struct.Struct(">Q")
SIZES = "sizes"
# Key-range buckets of every run file here; the apply step reads decision runs
# by the same bucketing, so both ends use this one value.
NUM_BUCKETS = 16


def _esc(s: str) -> bytes:
    # NUL is escaped as NUL 0x01 and fields end with NUL NUL: byte order of the
    # escaped form is the order of the strings, and no encoding is a prefix of another.
    return s.encode("utf-8", "surrogatepass").replace(b"\x00", b"\x00\x01") + _END


def _unesc(b: bytes) -> str:
    return b.replace(b"\x00\x01", b"\x00").decode("utf-8", "surrogatepass")


def encode_record(rec: tuple) -> bytes:
    """``(id, file, line)`` as bytes whose order is the tuple's order."""
    doc_id, file, line = rec
    return _esc(doc_id) + _esc(file) + _U64.pack(int(line) + (1 << 63))


def record_id(enc: bytes) -> str:
    """The document id of an ``encode_record`` result."""
    return _unesc(enc[: enc.index(_END)])


def id_prefix(doc_id: str) -> bytes:
    """What a decision about every record with this id starts with."""
    return _ID + _esc(doc_id)


def member(rec: tuple, sort_key: int) -> bytes:
    return encode_record(rec) + _U64.pack(sort_key)


# ------------------------------------------------------------------ 1. keys
class DedupKeys(beam.DoFn):
    """A clean document -> ``(text key, member)`` (main) and ``(line key, member)`` (``lines``)."""

    def __init__(self, exact: bool, lines: bool, line_min_chars: int):
        self.exact = exact
        self.lines = lines
        self.line_min_chars = line_min_chars

    def process(self, d: dict):
        m = member(record_key(d), stable_hash64(d["id"]))
        tkey, lkeys = text_and_line_keys(d["text"], self.line_min_chars)  # one normalising pass
        if self.exact:
            yield tkey, m
        if self.lines:
            for k in dict.fromkeys(k for _, k in lkeys):  # each distinct line once
                yield pvalue.TaggedOutput("lines", (k, m))


# ------------------------------------------------------------------ 2. decide
class _Decide(beam.DoFn):
    """Merged member runs of one bucket -> decision runs for every member but the first.

    Decisions are spilled here, not emitted: as elements they would cross a
    stage boundary, which the local runner buffers whole in memory. Outputs
    ``(bucket, (path, count))`` per decision run, and tagged ``sizes``:
    ``(group size, groups)`` for the exact-duplicate histogram.
    """

    def __init__(self, kind: bytes, out_dir: str, num_buckets: int, spill_bytes: int):
        self.kind = kind
        self.spill = Spill(out_dir, num_buckets, spill_bytes)

    def start_bundle(self) -> None:
        self.spill.start_bundle()
        self.sizes: dict[int, int] = {}

    def process(self, element):
        _, runs = element
        merged = merge_runs([path for path, _ in runs])
        cur, n, owner, data = None, 0, b"", b""
        for key, m in merged:
            rec, sort_key = m[:-8], m[-8:]
            if key != cur:
                self._size(n)
                cur, n, owner = key, 1, rec
                data = b""
                continue
            n += 1
            if rec == owner:  # the same record twice: nothing to drop
                continue
            if not data:
                data = (record_id(owner).encode("utf-8", "surrogatepass") if self.kind == EXACT
                        else _U64.pack(key))
            yield from self.spill.process((_U64.unpack(sort_key)[0], rec + self.kind + data))
        self._size(n)

    def _size(self, n: int) -> None:
        if n >= 2 and self.kind == EXACT:
            self.sizes[n] = self.sizes.get(n, 0) + 1

    def finish_bundle(self):
        yield from self.spill.finish_bundle()
        for n, groups in sorted(self.sizes.items()):
            yield pvalue.TaggedOutput(SIZES, GlobalWindows.windowed_value((n, groups)))


class Decisions(beam.PTransform):
    """``(key, member)`` -> decision runs ``(bucket, (path, count))``; tagged ``sizes``."""

    def __init__(self, tmp_dir: str, kind: bytes, num_buckets: int = NUM_BUCKETS,
                 spill_bytes: int = 16 << 20):
        super().__init__()
        self.tmp_dir = tmp_dir
        self.kind = kind
        self.num_buckets = num_buckets
        self.spill_bytes = spill_bytes

    def expand(self, pcoll):
        return (pcoll
                | "Spill" >> beam.ParDo(Spill(f"{self.tmp_dir}/members", self.num_buckets,
                                              self.spill_bytes))
                | "GroupRuns" >> beam.GroupByKey()
                | "Decide" >> beam.ParDo(_Decide(self.kind, f"{self.tmp_dir}/decisions",
                                                 self.num_buckets, self.spill_bytes))
                .with_outputs(SIZES, main="runs"))


def id_decision(kind: bytes):
    """``(doc id, info dict)`` -> a decision record naming every record with that id."""
    def fn(kv):
        doc_id, info = kv
        return stable_hash64(doc_id), id_prefix(doc_id) + kind + json.dumps(
            info, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return fn


def spill_decisions(tmp_dir: str) -> beam.ParDo:
    """Decision records -> sorted runs ``(bucket, (path, count))``, bucketed as the reader expects."""
    return beam.ParDo(Spill(tmp_dir, NUM_BUCKETS, 16 << 20))


# ------------------------------------------------------------------ 3. apply
class DecisionReader:
    """Decisions for ascending sort keys, read from the bucketed run files.

    ``runs`` are ``(bucket, (path, count))`` from ``Decisions`` and
    ``spill_decisions``, bucketed by ``num_buckets`` key ranges; only the buckets
    the asked keys fall in are opened, one at a time.
    """

    def __init__(self, runs: Iterable, num_buckets: int):
        self.num_buckets = num_buckets
        self.by_bucket: dict[int, list[str]] = {}
        for bucket, (path, _) in runs:
            self.by_bucket.setdefault(bucket, []).append(path)
        self.bucket = -1
        self.it: Iterator = iter(())
        self.head: Optional[tuple[int, bytes]] = None
        self.last = -1
        self.cached: list[bytes] = []

    def _open(self, bucket: int) -> None:
        self.bucket = bucket
        self.it = merge_runs(self.by_bucket.get(bucket, []))
        self.head = next(self.it, None)

    def take(self, sort_key: int) -> list[bytes]:
        """The payloads of every decision filed under ``sort_key`` (keys must not go down)."""
        if sort_key == self.last:  # records sharing an id share a sort key
            return self.cached
        if sort_key < self.last:
            raise ValueError(f"documents out of sort-key order ({sort_key} after {self.last}): "
                             "a clean shard was not written by this pipeline")
        self.last = sort_key
        bucket = (sort_key * self.num_buckets) >> 64
        if bucket != self.bucket:
            self._open(bucket)
        out = []
        while self.head is not None and self.head[0] <= sort_key:
            if self.head[0] == sort_key:
                out.append(self.head[1])
            self.head = next(self.it, None)
        self.cached = out
        return out


def split_decisions(payloads: list[bytes], rec: tuple, doc_id: str) -> dict[bytes, list[bytes]]:
    """This record's decisions by kind (``EXACT``, ``LINE``, ``NEAR``, ``DECONTAM``) -> data."""
    out: dict[bytes, list[bytes]] = {}
    if not payloads:
        return out
    mine = encode_record(rec)
    by_id = id_prefix(doc_id)
    for p in payloads:
        for prefix in (mine, by_id):
            if p.startswith(prefix):
                out.setdefault(p[len(prefix):len(prefix) + 1], []).append(p[len(prefix) + 1:])
    return out
