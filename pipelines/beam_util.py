"""Small Beam helpers shared by the stages: counters, JSON records, stats (runners: ``pipelines.runners``)."""

from __future__ import annotations

import collections
import gzip
import io
import json
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from corpusflow import counters as _counters

NAMESPACE = "corpusflow"


class BeamInc:
    """An ``Inc`` that bumps Beam counters (names checked against the vocabulary)."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __call__(self, name: str, n: int = 1) -> None:
        c = self._cache.get(name)
        if c is None:
            c = self._cache[name] = Metrics.counter(NAMESPACE, _counters.check(name))
        c.inc(n)


def query_counters(result) -> dict[str, int]:
    """Committed counter values of a finished pipeline (attempted where unsupported)."""
    out: dict[str, int] = collections.Counter()
    for c in result.metrics().query()["counters"]:
        if c.key.metric.namespace != NAMESPACE:
            continue
        try:
            v = c.committed
        except Exception:  # noqa: BLE001 - some runners only report attempted
            v = None
        if v is None:
            v = c.attempted
        out[c.key.metric.name] += int(v or 0)
    return {k: v for k, v in sorted(out.items()) if v}


def dumps(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, UTF-8): the same object, the same bytes."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def iter_json_lines(path: str) -> Iterator[dict]:
    """Stream JSON objects from a (gzip) JSON-lines file or a docs Parquet file."""
    if path.endswith(".parquet"):
        yield from _iter_parquet(path)
        return
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        f = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
        for line in io.BufferedReader(f, 1 << 20) if not hasattr(f, "peek") else f:
            if line.strip():
                yield json.loads(line)


def _iter_parquet(path: str) -> Iterator[dict]:
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        pf = pq.ParquetFile(io.BytesIO(raw.read()))
    for batch in pf.iter_batches(batch_size=2048):
        for row in batch.to_pylist():
            row["meta"] = json.loads(row.get("meta") or "{}")
            yield row


def read_json_file(path: str) -> Any:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return json.loads(f.read().decode("utf-8"))


def write_json_file(path: str, obj: Any) -> None:
    """Write JSON atomically: a reader (or a --resume after a kill) sees the old file or the
    new one, never a truncated one (local: temp file + rename; object stores publish a file
    only when it is closed)."""
    import os
    data = json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
    if "://" in path:
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(data)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def merge_stats(a: dict, b: dict) -> dict:
    """Add nested dicts of numbers (histograms and totals) key by key."""
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict):
            out[k] = merge_stats(out.get(k, {}), v)
        elif isinstance(v, (int, float)):
            out[k] = out.get(k, 0) + v
        else:
            out[k] = v
    return out


class MergeStatsFn(beam.CombineFn):
    """Combine the per-bundle stats dicts the DoFns emit into one."""

    def create_accumulator(self) -> dict:
        return {}

    def add_input(self, acc: dict, item: dict) -> dict:
        return merge_stats(acc, item)

    def merge_accumulators(self, accs) -> dict:
        out: dict = {}
        for a in accs:
            out = merge_stats(out, a)
        return out

    def extract_output(self, acc: dict) -> dict:
        return _sort_nested(acc)


def _sort_nested(d: dict) -> dict:
    return {k: (_sort_nested(v) if isinstance(v, dict) else v)
            for k, v in sorted(d.items(), key=lambda kv: _num_key(kv[0]))}


def _num_key(k: str):
    try:
        return (0, float(k), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(k))


class WriteJson(beam.PTransform):
    """Collect a PCollection into one JSON file (a list, or one merged stats dict)."""

    def __init__(self, path: str, merge: bool = False):
        super().__init__()
        self.path = path
        self.merge = merge

    def expand(self, pcoll):
        if self.merge:
            combined = pcoll | "Merge" >> beam.CombineGlobally(MergeStatsFn())
        else:
            combined = (pcoll | "ToList" >> beam.combiners.ToList()
                        | "Sort" >> beam.Map(lambda xs: sorted(xs, key=lambda d: json.dumps(d, sort_keys=True))))
        path = self.path
        return combined | "Write" >> beam.Map(lambda obj: write_json_file(path, obj))
