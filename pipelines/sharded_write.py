"""Deterministic, balanced, memory-bounded sharded writes for Beam.

``ShardedWrite`` takes ``(sort_key: int, payload: bytes)`` elements and writes
``num_shards`` files whose bytes depend only on the set of elements, never on
bundling, worker count or arrival order:

1. spill  - each bundle buffers elements (bounded by ``spill_bytes``), sorts them
            and writes sorted runs, one per key-range bucket, to a temp dir;
2. merge  - per bucket, the runs are k-way merged (streaming); each element's
            global rank (bucket offset from a counts side input + position) picks
            its shard, so shard s holds ranks [s*N//S, (s+1)*N//S): counts differ
            by at most one and, because the keys are seeded hashes, every shard is
            a shuffled sample of the whole corpus;
3. finish - per shard, the pieces are concatenated in bucket order into a temp
            file that is then renamed, so a retried bundle never duplicates data.

No step holds more than one spill buffer or one record per merged run in memory,
which keeps the local runner's memory flat in input size (a ``GroupByKey`` of
whole records would buffer the corpus on the in-process runner).
Only the runs reported by committed bundles are merged, so runs left by a
failed, retried bundle are ignored and removed with the temp dir.
"""

from __future__ import annotations

import gzip
import heapq
import io
import json
import os
import posixpath
import struct
import uuid
from typing import Iterable, Iterator, Optional

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from corpusflow.io.tfrecord import tfrecord_frame
from pipelines.integrity import Crc32cWriter

_HDR = struct.Struct(">QI")
_ITEM_OVERHEAD = 133
_COPY_CHUNK = 1 << 20

FORMATS = ("tfrecord", "jsonl", "parquet")


def _ensure_dir(path: str) -> None:
    if "://" not in path:
        os.makedirs(path, exist_ok=True)


def open_write(path: str):
    """A new file (parent folders made locally), uncompressed."""
    _ensure_dir(os.path.dirname(path))
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _open_read(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_run(path: str) -> Iterator[tuple[int, bytes]]:
    """Stream the ``(key, payload)`` records of one sorted run file (as ``Spill`` wrote it)."""
    with _open_read(path) as f:
        while True:
            hdr = f.read(_HDR.size)
            if not hdr:
                return
            key, n = _HDR.unpack(hdr)
            yield key, f.read(n)


# At most this many run files are open in one merge. A 30 GB build spills
# thousands of runs per bucket; opening all at once would exhaust file handles
# (and, on GCS, each reader's buffer would add up), so larger sets are merged
# in passes through intermediate runs first.
MAX_FAN_IN = 64


def merge_runs(paths: Iterable[str], tmp_dir: Optional[str] = None,
               max_fan_in: int = MAX_FAN_IN) -> Iterator[tuple[int, bytes]]:
    """The ``(key, payload)`` records of sorted runs, merged into one sorted stream.

    The order equals one k-way merge of all runs (ties compare payloads), so
    the number of passes never changes the output. Intermediate runs go to
    ``tmp_dir/merged`` (default: beside the runs' ``runs/`` folder).
    """
    paths = sorted(paths)
    if tmp_dir is None and paths:
        tmp_dir = posixpath.dirname(posixpath.dirname(paths[0]))
    made: list[str] = []
    try:
        while len(paths) > max_fan_in:
            merged = []
            for i in range(0, len(paths), max_fan_in):
                group = paths[i:i + max_fan_in]
                if len(group) == 1:
                    merged.append(group[0])
                    continue
                out = f"{tmp_dir}/merged/{uuid.uuid4().hex}.run"
                with open_write(out) as f:
                    for key, payload in heapq.merge(*[read_run(p) for p in group]):
                        f.write(_HDR.pack(key, len(payload)))
                        f.write(payload)
                made.append(out)
                merged.append(out)
            paths = merged
        yield from heapq.merge(*[read_run(p) for p in paths])
    finally:
        # Intermediate runs are this call's own: remove them as soon as it is done.
        if made:
            FileSystems.delete([p for p in made if FileSystems.exists(p)])


def install(tmp: str, final: str) -> int:
    """Move a finished temp file to its final name (replacing an old one); its size.

    The final name only ever holds complete files, so a retried bundle or a
    killed run never leaves a half-written output under it.
    """
    if FileSystems.exists(final):
        FileSystems.delete([final])
    FileSystems.rename([tmp], [final])
    return FileSystems.match([final])[0].metadata_list[0].size_in_bytes


def shard_name(prefix: str, shard: int, num_shards: int, suffix: str) -> str:
    return f"{prefix}-{shard:05d}-of-{num_shards:05d}{suffix}"


def frame(payload: bytes, fmt: str) -> bytes:
    """The payload framed as it appears in an uncompressed output file."""
    if fmt == "tfrecord":
        return tfrecord_frame(payload)
    return payload + b"\n"


class Spill(beam.DoFn):
    """The spill writer: ``(sort_key, payload)`` -> sorted run files, one per key-range bucket per flush.

    ``sort_key`` is a 64-bit unsigned int; its top bits pick one of ``num_buckets``
    equal key ranges. Records are buffered until ``spill_bytes`` (estimated memory)
    and at the end of the bundle, then each bucket's records are sorted and written
    to ``tmp_dir/runs/bNNNNN-<random>.run`` (``read_run`` reads one back,
    ``merge_runs`` merges many). Yields ``(bucket, (path, count))`` per run, or
    with ``checksum`` ``(bucket, (path, count, crc32c hex))`` (runs kept as a
    stage's output).

    Use it as ``beam.ParDo(Spill(...))``, or inside another DoFn that spills as a
    side effect: call its ``start_bundle``, ``process`` and ``finish_bundle`` from
    the host's own (``process`` yields run records when a flush happens;
    ``finish_bundle`` yields them as windowed values).
    """

    def __init__(self, tmp_dir: str, num_buckets: int, spill_bytes: int, checksum: bool = False):
        self.tmp_dir = tmp_dir
        self.num_buckets = num_buckets
        self.spill_bytes = spill_bytes
        self.checksum = checksum

    def start_bundle(self) -> None:
        self._buf: dict[int, list[tuple[int, bytes]]] = {}
        self._bytes = 0

    def process(self, kv: tuple[int, bytes]):
        key, payload = kv
        bucket = (key * self.num_buckets) >> 64
        self._buf.setdefault(bucket, []).append((key, payload))
        # What the pair costs in memory: a 2-tuple (56 bytes), a 64-bit int (36),
        # the bytes object (33 + payload) and a list slot (8).
        self._bytes += len(payload) + _ITEM_OVERHEAD
        if self._bytes >= self.spill_bytes:
            yield from self._flush()

    def finish_bundle(self):
        for item in self._flush():
            yield GlobalWindows.windowed_value(item)

    def _flush(self) -> Iterator[tuple[int, tuple[str, int]]]:
        for bucket in sorted(self._buf):
            items = self._buf[bucket]
            items.sort()
            # A random name is fine here: runs are temp files whose names never
            # reach the output; only committed bundles' runs are merged.
            path = f"{self.tmp_dir}/runs/b{bucket:05d}-{uuid.uuid4().hex}.run"
            with Crc32cWriter(open_write(path)) as f:
                for key, payload in items:
                    f.write(_HDR.pack(key, len(payload)))
                    f.write(payload)
            yield bucket, ((path, len(items), f.hexdigest) if self.checksum
                           else (path, len(items)))
        self._buf = {}
        self._bytes = 0


class _MergeBucket(beam.DoFn):
    def __init__(self, tmp_dir: str, num_shards: int, fmt: str, max_fan_in: int = MAX_FAN_IN):
        self.tmp_dir = tmp_dir
        self.num_shards = num_shards
        self.fmt = fmt
        self.max_fan_in = max_fan_in

    def process(self, element, counts: dict[int, int]):
        bucket, runs = element
        total = sum(counts.values())
        rank = sum(c for b, c in counts.items() if b < bucket)
        merged = merge_runs([run[0] for run in runs], self.tmp_dir, self.max_fan_in)
        shard, end, out, count, path = -1, -1, None, 0, ""
        for _, payload in merged:
            if rank >= end:  # this rank starts a new shard's range
                if out is not None:
                    out.close()
                    yield shard, (bucket, path, count)
                shard = shard_of_rank(rank, total, self.num_shards)
                end = (shard + 1) * total // self.num_shards
                # Deterministic name: a retried merge overwrites its own piece.
                path = f"{self.tmp_dir}/pieces/s{shard:05d}-b{bucket:05d}.piece"
                out = open_write(path)
                count = 0
            out.write(frame(payload, self.fmt))
            count += 1
            rank += 1
        if out is not None:
            out.close()
            yield shard, (bucket, path, count)


def shard_of_rank(rank: int, total: int, num_shards: int) -> int:
    """The shard s with s*N//S <= rank < (s+1)*N//S (balanced to within one)."""
    return ((rank + 1) * num_shards - 1) // total


class _FinishShard(beam.DoFn):
    def __init__(self, prefix: str, num_shards: int, suffix: str, fmt: str, gzip_output: bool):
        self.prefix = prefix
        self.num_shards = num_shards
        self.suffix = suffix
        self.fmt = fmt
        self.gzip_output = gzip_output

    def process(self, element):
        shard, pieces = element
        pieces = sorted(p for p in pieces if p is not None)
        final = shard_name(self.prefix, shard, self.num_shards, self.suffix)
        tmp = f"{final}.tmp-{uuid.uuid4().hex}"
        count = sum(c for _, _, c in pieces)
        # The CRC32C of the bytes as stored, computed on the way out (--resume checks it).
        with Crc32cWriter(open_write(tmp)) as raw:
            if self.fmt == "parquet":
                _write_parquet(raw, (p for _, p, _ in pieces))
            elif self.gzip_output:
                # mtime=0 and no file name: gzip output must be byte-identical
                # across reruns.
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="",
                                   compresslevel=6) as gz:
                    _copy_pieces(pieces, gz)
            else:
                _copy_pieces(pieces, raw)
        yield {"shard": shard, "file": os.path.basename(final), "count": count,
               "bytes": install(tmp, final), "crc32c": raw.hexdigest}


def _copy_pieces(pieces, out) -> None:
    for _, path, _ in pieces:
        with _open_read(path) as f:
            while True:
                chunk = f.read(_COPY_CHUNK)
                if not chunk:
                    break
                out.write(chunk)


def _write_parquet(raw, paths: Iterable[str], batch_rows: int = 4096) -> None:
    """Docs as Parquet: one row per JSON line, nested ``meta`` kept as JSON text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("source", pa.string()), ("title", pa.string()),
                        ("text", pa.string()), ("meta", pa.string())])
    writer = pq.ParquetWriter(raw, schema, compression="zstd")
    rows: list[dict] = []

    def flush() -> None:
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            rows.clear()

    for path in paths:
        with _open_read(path) as f:
            for line in io.TextIOWrapper(f, encoding="utf-8"):
                obj = json.loads(line)
                rows.append({"id": obj["id"], "source": obj["source"], "title": obj.get("title", ""),
                             "text": obj["text"],
                             "meta": json.dumps(obj.get("meta") or {}, ensure_ascii=False,
                                                sort_keys=True)})
                if len(rows) >= batch_rows:
                    flush()
    flush()
    writer.close()


class ShardedWrite(beam.PTransform):
    """Write ``(sort_key, payload)`` to ``num_shards`` balanced, sorted, deterministic files.

    Returns a PCollection of ``{"shard", "file", "count", "bytes"}``, one per shard.
    """

    def __init__(self, prefix: str, num_shards: int, fmt: str = "tfrecord",
                 gzip_output: bool = False, suffix: Optional[str] = None,
                 tmp_dir: Optional[str] = None, spill_bytes: int = 32 << 20,
                 num_buckets: Optional[int] = None, max_fan_in: int = MAX_FAN_IN):
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
        if num_shards < 1:
            raise ValueError("num_shards must be >= 1")
        self.prefix = prefix
        self.num_shards = num_shards
        self.fmt = fmt
        self.gzip_output = gzip_output and fmt != "parquet"
        if suffix is None:
            suffix = {"tfrecord": ".tfrecord", "jsonl": ".jsonl", "parquet": ".parquet"}[fmt]
            if self.gzip_output:
                suffix += ".gz"
        self.suffix = suffix
        self.tmp_dir = tmp_dir or f"{os.path.dirname(prefix)}/_tmp-{os.path.basename(prefix)}"
        self.spill_bytes = spill_bytes
        self.max_fan_in = max_fan_in
        # Buckets bound one merge's work; more buckets than shards buys nothing.
        self.num_buckets = num_buckets or max(1, min(num_shards, 64))

    def expand(self, pcoll):
        runs = pcoll | "Spill" >> beam.ParDo(Spill(self.tmp_dir, self.num_buckets,
                                                   self.spill_bytes))
        return runs | "MergeRuns" >> MergeRuns(self.prefix, self.num_shards, self.fmt,
                                               self.gzip_output, self.suffix, self.tmp_dir,
                                               self.max_fan_in)


def spill_runs(tmp_dir: str, num_buckets: int, spill_bytes: int = 32 << 20) -> beam.ParDo:
    """``(sort_key, payload)`` -> ``(bucket, (run path, count, crc32c))``: sorted run files.

    Runs go to ``tmp_dir/runs``. Only the runs a committed bundle reported
    belong to the output; a stage that keeps runs as its result (the
    ``instances`` stage) lists those and removes the rest.
    """
    return beam.ParDo(Spill(tmp_dir, num_buckets, spill_bytes, checksum=True))


class MergeRuns(beam.PTransform):
    """``(bucket, (run path, count))`` -> ``num_shards`` files (ShardedWrite's steps 2-3).

    Returns ``{"shard", "file", "count", "bytes"}`` per shard, as ShardedWrite.
    """

    def __init__(self, prefix: str, num_shards: int, fmt: str, gzip_output: bool, suffix: str,
                 tmp_dir: str, max_fan_in: int = MAX_FAN_IN):
        super().__init__()
        self.prefix = prefix
        self.num_shards = num_shards
        self.fmt = fmt
        self.gzip_output = gzip_output
        self.suffix = suffix
        self.tmp_dir = tmp_dir
        self.max_fan_in = max_fan_in

    def expand(self, runs):
        counts = (runs | "RunCounts" >> beam.Map(lambda kv: (kv[0], kv[1][1]))
                  | "SumPerBucket" >> beam.CombinePerKey(sum))
        pieces = (runs | "GroupRuns" >> beam.GroupByKey()
                  | "Merge" >> beam.ParDo(_MergeBucket(self.tmp_dir, self.num_shards, self.fmt,
                                                       self.max_fan_in),
                                          counts=beam.pvalue.AsDict(counts)))
        # Every shard exists, even an empty one.
        empties = (runs.pipeline | "AllShards" >> beam.Create(list(range(self.num_shards)))
                   | "NoPiece" >> beam.Map(lambda s: (s, None)))
        return ((pieces, empties) | "WithEmpty" >> beam.Flatten()
                | "GroupPieces" >> beam.GroupByKey()
                | "Finish" >> beam.ParDo(_FinishShard(self.prefix, self.num_shards, self.suffix,
                                                      self.fmt, self.gzip_output)))


def cleanup(tmp_dir: str) -> None:
    """Remove a ShardedWrite temp dir after the pipeline finished."""
    if FileSystems.exists(tmp_dir):
        FileSystems.delete([tmp_dir])
