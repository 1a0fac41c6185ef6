"""Small Beam helpers shared by the stages: runners, counters, JSON records, stats."""

from __future__ import annotations

import collections
import gzip
import io
import json
from typing import Any, Iterator, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms.environments import SubprocessSDKEnvironment

from corpusflow import counters as _counters
from pipelines import worker_zygote

NAMESPACE = "corpusflow"


def make_runner(options: PipelineOptions, preload: Optional[Sequence[str]] = None):
    """The runner to use: the in-process FnApiRunner for local runs.

    Beam 2.77's DirectRunner first tries to download the Prism runner binary (no
    timeout on that path); the FnApiRunner never touches the network and honours
    ``--direct_num_workers`` / ``--direct_running_mode``.

    With ``--direct_running_mode multi_processing`` the SDK workers are forked
    from one pre-imported zygote process (``pipelines.worker_zygote``) instead
    of each paying ~1 s of imports; ``CORPUSFLOW_ZYGOTE=0`` restores Beam's
    stock workers. ``preload`` names zygote warm-ups (``worker_zygote.PRELOADS``).
    """
    name = options.view_as(StandardOptions).runner
    if name in (None, "DirectRunner", "FnApiRunner", "direct"):
        if (options.view_as(DirectOptions).direct_running_mode == "multi_processing"
                and worker_zygote.enabled()):
            runner = ZygoteFnApiRunner(preload=_zygote_preload(options) if preload is None
                                       else preload)
            # Start it now: its imports overlap with the driver building the
            # first pipeline. (If it cannot start: a warning, stock workers.)
            worker_zygote.shared(runner.preload)
            return runner
        return FnApiRunner()
    if name == "DaskRunner":
        # corpusflow's own Dask runner (pipelines/runners/dask_runner.py), not Beam's.
        from pipelines.runners.dask_runner import DaskRunner
        return DaskRunner()
    if name == "DataflowRunner":
        # An instance, so a --dry_run can report the job graph it built.
        from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
        return DataflowRunner()
    return name


def _zygote_preload(options: PipelineOptions) -> tuple[str, ...]:
    """Zygote warm-ups a build's flags call for (``worker_zygote.PRELOADS``).

    Not "jieba": JiebaSegmenter loads its dictionary into a private
    Tokenizer, so the zygote's global one would not be used (measured: no gain).
    """
    from pipelines.options import BuildOptions
    b = options.view_as(BuildOptions)
    return ("near_dedup",) if (b.near_dedup or b.decontaminate) else ()


class ZygoteFnApiRunner(FnApiRunner):
    """An FnApiRunner whose multi_processing SDK workers are forked by a zygote.

    Every other running mode, and multi_processing with the zygote disabled or
    unavailable, behaves exactly like FnApiRunner.
    """

    def __init__(self, preload: Sequence[str] = ()) -> None:
        self._zygote_env: Optional[SubprocessSDKEnvironment] = None
        self.preload = tuple(preload)
        super().__init__()

    # FnApiRunner.run_pipeline assigns Beam's stock worker command to
    # self._default_environment for multi_processing and uses it right away.
    # Intercepting that one assignment keeps all of run_pipeline (options,
    # worker count, warnings) Beam's own, instead of copying it here.
    @property  # type: ignore[override]
    def _default_environment(self):
        return self.__dict__["_corpusflow_default_environment"]

    @_default_environment.setter
    def _default_environment(self, env) -> None:
        zygote_env = self.__dict__.get("_zygote_env")
        if (zygote_env is not None and isinstance(env, SubprocessSDKEnvironment)
                and worker_zygote.STOCK_WORKER_MODULE in env.command_string):
            env = zygote_env
        self.__dict__["_corpusflow_default_environment"] = env

    def run_pipeline(self, pipeline, options):
        self._zygote_env = None
        if options.view_as(DirectOptions).direct_running_mode == "multi_processing":
            zygote = worker_zygote.shared(self.preload)  # None: stock workers
            if zygote is not None:
                self._zygote_env = SubprocessSDKEnvironment.from_command_string(zygote.command)
        try:
            return super().run_pipeline(pipeline, options)
        finally:
            self._zygote_env = None

    @staticmethod
    def close() -> None:
        """Stop the zygote now rather than at interpreter exit."""
        worker_zygote.close_shared()


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
