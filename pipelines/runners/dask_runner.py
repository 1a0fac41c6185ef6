"""A Dask runner corpusflow owns: Beam 2.77's ``DaskRunner`` with its translation replaced.

``--runner DaskRunner`` runs every stage of ``python -m pipelines.build`` on a
``distributed`` cluster (``--dask_address tcp://HOST:PORT``) or on a local
multi-process one started for the run (``--dask_local_workers N``). Outputs are
byte-identical to the local runner's (tests/test_dask_runner.py proves it on a
real scheduler and two worker processes).

What Beam 2.77's own DaskRunner gets wrong, and what this one does instead:

1. Only the last bag of the pipeline was computed, so every other sink wrote
   nothing. Here every ParDo task is a dependency of the run's counter
   futures, so every sink runs (and nothing else is fetched to the driver).
2. A multi-output ParDo fed all of its outputs, tagged or not, to every
   consumer. Here each task returns one list per output tag and each output
   PCollection is its own list of partitions.
3. Outputs emitted in ``finish_bundle`` were dropped (the results were taken
   before it ran). Here Beam's ``DoFnRunner`` runs start/process/finish per
   partition and the receivers collect all of it.
4. ``result.metrics()`` raised NotImplementedError. Here every task runs
   under its own ``MetricsContainer`` and returns its counters with its
   output; a task retried after a worker died counts once (only its
   successful result is kept), so counters are "committed" values.
5. Side inputs were recomputed inside every task (``list(bag)``). Here a side
   input is one task whose result every consumer depends on.
6. ``Reshuffle`` was a no-op and ``Create`` packed 128 elements per partition
   (six input files became one task). Here ``Create`` makes one partition per
   element up to the partition count, and ``Reshuffle`` / ``GroupByKey`` are
   real shuffles into that many partitions (hash of the deterministic key
   encoding for GroupByKey, round robin for Reshuffle).

Limits (also in the README, "Beyond one machine without Google Cloud: Dask"):

* Memory: a task holds one partition: its input list, its outputs (lists, all
  of them, until the task ends) and each side input it reads, whole. There is
  no fusion: consecutive ParDos each materialise their partition. corpusflow's
  stages keep elements small after their first step (documents are spilled to
  sorted runs on disk, only paths travel), so a task's memory is about the
  records of the input files in its partition; one input file is never split.
* Parallelism: every shuffle (``GroupByKey``, ``Reshuffle``) and ``Create``
  uses the same partition count P: ``--dask_partitions N``, or by default
  ``max(4 x worker threads, ceil(total --input bytes / 16 MiB))`` capped at
  4096, so a partition of the input is at most ~16 MiB whatever the corpus
  size, and every worker thread has several tasks to balance on.
* Only the global window (batch pipelines); no state, timers, splittable
  DoFns, ``Read`` of a BoundedSource or TestStream: such a pipeline is refused
  with a message naming the transform.
* Paths must be visible to every worker under the same name (a shared
  filesystem, or gs://): the driver checks that before the first stage.
* One thread per worker process is what corpusflow's DoFns are tested with
  (``--dask_local_workers`` starts workers that way; start ``dask worker
  --nthreads 1``); DoFn instances are set up once per process and reused.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import importlib.metadata
import math
import operator
import os
import platform
import re
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.internal import pickler
from apache_beam.metrics.execution import MetricKey, MetricResult, MetricsContainer
from apache_beam.metrics.metric import MetricName, MetricResults
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor
from apache_beam.runners.common import DoFnRunner, Receiver
from apache_beam.runners.runner import PipelineResult, PipelineState
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils import counters as beam_counters

from pipelines.errors import UsageError
from pipelines.options import BuildOptions  # registers the --dask_* flags

#: Beam versions this runner was tested with. It replaces Beam's DaskRunner
#: translation and reuses Beam internals (DoFnRunner, the Create/Reshuffle
#: overrides, StateSampler), which change between releases without notice.
TESTED_BEAM_VERSIONS = ("2.77.0",)
#: Input bytes per partition the default partition count aims at.
TARGET_PARTITION_BYTES = 16 << 20
MIN_PARTITIONS_PER_THREAD = 4
MAX_AUTO_PARTITIONS = 4096
PROGRESS_EVERY_S = 10.0
_ROOT = Path(__file__).resolve().parents[2]


class DaskRunnerError(UsageError):
    """A Dask run refused before it starts (one line: version, cluster, paths)."""


def check_beam_version(version: Optional[str] = None) -> None:
    """Refuse a Beam release this runner was not tested with."""
    version = version or beam.__version__
    if version not in TESTED_BEAM_VERSIONS:
        raise DaskRunnerError(
            f"--runner DaskRunner is tested with apache-beam {', '.join(TESTED_BEAM_VERSIONS)} "
            f"only and this is {version}: install apache-beam=={TESTED_BEAM_VERSIONS[-1]} "
            f"(pip install -e '.[dask]') or use another runner")


def _base_runner_class():
    from apache_beam.runners.dask.dask_runner import DaskRunner as BeamDaskRunner
    return BeamDaskRunner


# --------------------------------------------------------------- environment
def _source_digest() -> str:
    """A digest of corpusflow's own .py files: a stale checkout on a worker differs."""
    h = hashlib.sha256()
    for pkg in ("corpusflow", "pipelines", "vocab"):
        for path in sorted((_ROOT / pkg).rglob("*.py")):
            h.update(str(path.relative_to(_ROOT)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def environment() -> dict[str, str]:
    """What driver and workers must agree on (runs on each worker too)."""
    try:
        version = importlib.metadata.version("corpusflow")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    import dask
    import distributed
    return {"corpusflow": f"{version}+{_source_digest()}", "apache-beam": beam.__version__,
            "python": platform.python_version(), "dask": dask.__version__,
            "distributed": distributed.__version__}


def _worker_environment() -> dict[str, str]:
    """``environment()`` as a worker sees it (looked up in the worker's own module)."""
    return environment()


def environment_mismatches(driver: dict[str, str], workers: dict[str, dict[str, str]]) -> list[str]:
    """One phrase per differing package and worker (empty: all agree)."""
    out = []
    for addr, env in sorted(workers.items()):
        for name, want in driver.items():
            got = env.get(name)
            if got != want:
                out.append(f"worker {addr} has {name} {got}, the driver {want}")
    return out


def _probe_paths(probe: Optional[tuple[str, bytes]], globs: Sequence[str],
                 files: Sequence[str]) -> list[str]:
    """Runs on a worker: the local paths it cannot see as the driver does."""
    from apache_beam.io.filesystems import FileSystems
    bad = []
    if probe is not None:
        path, token = probe
        try:
            with open(path, "rb") as f:
                if f.read() != token:
                    bad.append(f"{os.path.dirname(path)} (another directory of that name)")
        except OSError:
            bad.append(os.path.dirname(path))
    for g, n in globs:
        try:
            got = len(FileSystems.match([g])[0].metadata_list)
        except Exception:  # noqa: BLE001 - a glob matching nothing raises on some filesystems
            got = 0
        if got != n:
            bad.append(f"{g} ({got} file(s), the driver sees {n})")
    bad += [f for f in files if not os.path.exists(f)]
    return bad


# ------------------------------------------------------------------ tasks
class _ListReceiver(Receiver):
    def __init__(self, out: list) -> None:
        self.out = out

    def receive(self, windowed_value) -> None:
        self.out.append(windowed_value.value)


class _Receivers(dict):
    """Declared output tags collect; outputs to a tag nobody reads are dropped (as Beam)."""

    def __missing__(self, tag):
        return _ListReceiver([])


# Per worker process: each transform's spec unpickled once, and its set-up DoFn
# instances kept for later tasks (setup() loads dictionaries and models; paying
# it per task would dominate). One instance serves one task at a time.
# A long-lived cluster serving many builds keeps the last MAX_CACHED_TRANSFORMS
# transforms' instances (a build has a few dozen ParDos); older ones are torn down.
MAX_CACHED_TRANSFORMS = 128
_SPECS: dict[str, "_ParDoSpec"] = {}
_IDLE_FNS: dict[str, list] = {}
_LOCK = threading.Lock()


def _evict_locked() -> list:
    """Drop the oldest cached transforms beyond the cap; their idle DoFns to tear down."""
    gone = []
    while len(_SPECS) > MAX_CACHED_TRANSFORMS:
        old = next(iter(_SPECS))
        _SPECS.pop(old)
        gone.extend(_IDLE_FNS.pop(old, []))
    return gone


@dataclasses.dataclass
class _ParDoSpec:
    """What a ParDo task needs besides its partition (pickled once per transform)."""
    step: str
    fn: Any
    args: tuple
    kwargs: dict
    side_views: list  # (view class, view options) per side input, in order
    tags: list  # output tags (None: main)
    windowing: Any


def _spec_and_fn(spec_bytes: bytes, digest: str):
    """(spec, DoFn instance, whether it still needs setup())."""
    with _LOCK:
        spec = _SPECS.get(digest)
        idle = _IDLE_FNS.get(digest)
        if spec is not None and idle:
            return spec, idle.pop(), False
    fresh = pickler.loads(spec_bytes)  # a private copy of the DoFn
    with _LOCK:
        spec = _SPECS.setdefault(digest, fresh)
        gone = _evict_locked()
    for fn in gone:
        try:
            fn.teardown()
        except Exception:  # noqa: BLE001 - teardown is best effort (as in Beam)
            pass
    return spec, fresh.fn, True


def _run_pardo(spec_bytes: bytes, digest: str, items: list, *side_values: list):
    """One bundle = one partition: returns ({tag: outputs}, {counter key: value})."""
    from apache_beam.runners.worker import statesampler
    spec, fn, fresh = _spec_and_fn(spec_bytes, digest)
    outputs: dict = {tag: [] for tag in spec.tags}
    receivers = _Receivers({tag: _ListReceiver(outputs[tag]) for tag in spec.tags})
    if None not in receivers:
        receivers[None] = _ListReceiver([])
    sides = [SideInputMap(view, opts, [GlobalWindows.windowed_value(v) for v in values])
             for (view, opts), values in zip(spec.side_views, side_values)]
    container = MetricsContainer(spec.step)
    sampler = statesampler.StateSampler("dask", beam_counters.CounterFactory())
    previous = statesampler.get_current_tracker()
    statesampler.set_current_tracker(sampler)
    ok = False
    try:
        with sampler.scoped_state(spec.step, "process", metrics_container=container):
            runner = DoFnRunner(fn, spec.args, spec.kwargs, sides, spec.windowing,
                                tagged_receivers=receivers, step_name=spec.step)
            if fresh:
                runner.setup()
            runner.start()
            for item in items:
                runner.process(GlobalWindows.windowed_value(item))
            runner.finish()
        ok = True
    finally:
        statesampler.set_current_tracker(previous)
        if ok:
            with _LOCK:
                _IDLE_FNS.setdefault(digest, []).append(fn)
        else:
            try:
                fn.teardown()
            except Exception:  # noqa: BLE001 - the task's own error is the one to report
                pass
    counters = {(spec.step, k.metric.namespace, k.metric.name): int(v)
                for k, v in container.get_cumulative().counters.items() if v}
    return outputs, counters


def _concat(*parts: list) -> list:
    out: list = []
    for p in parts:
        out.extend(p)
    return out


def _round_robin(items: list, index: int, n: int) -> list[list]:
    buckets: list[list] = [[] for _ in range(n)]
    for k, item in enumerate(items):
        buckets[(index + k) % n].append(item)
    return buckets


def _key_bytes(coder, key) -> bytes:
    try:
        return b"c" + coder.encode(key)
    except Exception:  # noqa: BLE001 - a key the deterministic coder refuses
        import pickle
        return b"p" + pickle.dumps(key, protocol=4)


def _hash_split(items: list, coder, n: int) -> list[list]:
    """(key bytes, key, value) per bucket; the bucket depends only on the key's bytes."""
    buckets: list[list] = [[] for _ in range(n)]
    for key, value in items:
        kb = _key_bytes(coder, key)
        h = int.from_bytes(hashlib.blake2b(kb, digest_size=8).digest(), "big")
        buckets[h % n].append((kb, key, value))
    return buckets


def _group(*pieces: list) -> list:
    """One reducer of a GroupByKey: values in input-partition order, keys by their bytes."""
    groups: dict[bytes, tuple[Any, list]] = {}
    for piece in pieces:
        for kb, key, value in piece:
            g = groups.get(kb)
            if g is None:
                groups[kb] = (key, [value])
            else:
                g[1].append(value)
    return [groups[kb] for kb in sorted(groups)]


def _sum_counters(*parts: dict) -> dict:
    out: dict = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0) + v
    return out


# ------------------------------------------------------------- translation
def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", label).strip("_")[:60] or "step"


class _Translator(PipelineVisitor):
    """Beam leaf transforms -> dask.delayed partitions (a PCollection is a list of them)."""

    def __init__(self, partitions: int, run_id: str) -> None:
        self.partitions = partitions
        self.run_id = run_id
        self.pcolls: dict[pvalue.PCollection, list] = {}
        self.side_tasks: dict[pvalue.PCollection, Any] = {}
        self.counter_parts: list = []
        self.tasks = 0
        self._n = 0

    def _key(self, label: str, i: int | str = "") -> str:
        self._n += 1
        return f"{_safe(label)}-{self.run_id}-{self._n}-{i}"

    def _delayed(self, fn, label: str, i, *args):
        from dask import delayed
        self.tasks += 1
        return delayed(fn, pure=False)(*args, dask_key_name=self._key(label, i))

    def visit_transform(self, node) -> None:
        from apache_beam.runners.dask.overrides import _Create, _Reshuffle
        t = node.transform
        label = node.full_label
        outs = list(node.outputs.values())
        if isinstance(t, _Create):
            values = list(t.values)
            n = max(1, min(len(values), self.partitions))
            bounds = [len(values) * i // n for i in range(n + 1)]
            # Pickled: Dask would read a literal tuple starting with a callable as a task.
            self.pcolls[outs[0]] = [
                self._delayed(pickler.loads, label, i, pickler.dumps(values[bounds[i]:bounds[i + 1]]))
                for i in range(n)]
        elif isinstance(t, beam.Impulse):
            self.pcolls[outs[0]] = [self._delayed(list, label, 0, [b""])]
        elif isinstance(t, _Reshuffle):
            self.pcolls[outs[0]] = self._shuffle(label, self._input(node), _round_robin, None)
        elif isinstance(t, beam.GroupByKey):
            from apache_beam import coders
            from apache_beam.typehints import typehints
            in_type = node.inputs[0].element_type
            key_type = (in_type.tuple_types[0] if isinstance(in_type, typehints.TupleConstraint)
                        and len(in_type.tuple_types) == 2 else Any)
            coder = coders.registry.get_coder(key_type)
            try:
                coder = coder.as_deterministic_coder(label)
            except ValueError:
                pass  # _key_bytes falls back to pickle for keys it cannot encode
            self.pcolls[outs[0]] = self._shuffle(label, self._input(node), _hash_split, coder)
        elif isinstance(t, beam.Flatten):
            parts: list = []
            for pc in node.inputs:
                parts.extend(self.pcolls[pc])
            self.pcolls[outs[0]] = parts
        elif isinstance(t, beam.ParDo):
            self._pardo(node)
        else:
            raise DaskRunnerError(f"DaskRunner cannot run {label!r} "
                                  f"({type(t).__name__}): not a batch ParDo/GroupByKey/"
                                  f"Flatten/Create/Reshuffle")

    def _input(self, node) -> list:
        (pc,) = [p for p in node.inputs]
        return self.pcolls[pc]

    def _shuffle(self, label: str, parts: list, split, coder) -> list:
        from dask import delayed
        n = self.partitions
        splits = []
        for i, part in enumerate(parts):
            args = (part, i, n) if coder is None else (part, coder, n)
            splits.append(self._delayed(split, f"{label}-split", i, *args))
        out = []
        for j in range(n):
            pieces = [delayed(operator.getitem, pure=True)(s, j, dask_key_name=self._key(
                f"{label}-piece", f"{i}_{j}")) for i, s in enumerate(splits)]
            out.append(self._delayed(_concat if coder is None else _group, label, j, *pieces))
        return out

    def _pardo(self, node) -> None:
        from dask import delayed
        t = node.transform
        label = node.full_label
        (main,) = list(node.main_inputs.values())
        for pc in [main, *node.outputs.values()]:
            wf = pc.windowing.windowfn
            if not isinstance(wf, GlobalWindows):
                raise DaskRunnerError(f"DaskRunner runs batch pipelines in the global window "
                                      f"only; {label!r} uses {type(wf).__name__}")
        sig_fn = t.fn
        from apache_beam.runners.common import DoFnSignature
        sig = DoFnSignature(sig_fn)
        if sig.is_stateful_dofn() or sig.is_splittable_dofn():
            raise DaskRunnerError(f"DaskRunner cannot run {label!r}: stateful or splittable DoFn")
        tags = list(node.outputs)
        spec = _ParDoSpec(label, t.fn, tuple(t.args or ()), dict(t.kwargs or {}),
                          [(type(si), si._view_options()) for si in t.side_inputs], tags,
                          main.windowing)
        spec_bytes = pickler.dumps(spec)
        digest = hashlib.sha256(spec_bytes).hexdigest()[:16]
        spec_task = delayed(spec_bytes, name=self._key(f"{label}-spec"))
        sides = [self._side(si.pvalue) for si in t.side_inputs]
        per_tag: dict = {tag: [] for tag in tags}
        for i, part in enumerate(self.pcolls[main]):
            task = self._delayed(_run_pardo, label, i, spec_task, digest, part, *sides)
            for tag in tags:
                per_tag[tag].append(delayed(operator.getitem, pure=True)(
                    delayed(operator.getitem, pure=True)(task, 0, dask_key_name=self._key(
                        f"{label}-out", i)), tag, dask_key_name=self._key(f"{label}-{tag}", i)))
            self.counter_parts.append(delayed(operator.getitem, pure=True)(
                task, 1, dask_key_name=self._key(f"{label}-counters", i)))
        for tag, pc in node.outputs.items():
            self.pcolls[pc] = per_tag[tag]

    def _side(self, pc):
        if pc not in self.side_tasks:
            self.side_tasks[pc] = self._delayed(_concat, f"side-{pc.producer.full_label}", 0,
                                                *self.pcolls[pc])
        return self.side_tasks[pc]


# ------------------------------------------------------------------ result
class DaskMetrics(MetricResults):
    """Counters summed over every finished task (committed = attempted)."""

    def __init__(self, counters: dict[tuple[str, str, str], int]) -> None:
        self._counters = counters

    def query(self, filter=None):
        results = []
        for (step, ns, name), v in sorted(self._counters.items()):
            key = MetricKey(step, MetricName(ns, name))
            if self.matches(filter, key):
                results.append(MetricResult(key, v, v))
        return {self.COUNTERS: results, self.DISTRIBUTIONS: [], self.GAUGES: [],
                self.STRINGSETS: [], self.BOUNDED_TRIES: [], self.HISTOGRAMS: []}


class DaskRunResult(PipelineResult):
    """A submitted pipeline: ``wait_until_finish`` gathers counters, raising a task's error."""

    def __init__(self, client, futures: list, tasks: int, progress: bool, name: str) -> None:
        super().__init__(PipelineState.RUNNING)
        self._client = client
        self._futures = futures
        self._tasks = tasks
        self._progress = progress
        self._name = name
        self._counters: Optional[dict] = None

    def wait_until_finish(self, duration=None) -> str:
        if self._counters is not None:
            return self._state
        import distributed
        total: dict = {}
        done, n = 0, len(self._futures)
        last = time.time()
        try:
            for _, part in distributed.as_completed(
                    self._futures, with_results=True, loop=self._client.loop,
                    timeout=None if duration is None else duration / 1000):
                total = _sum_counters(total, part)
                done += 1
                if self._progress and time.time() - last >= PROGRESS_EVERY_S:
                    last = time.time()
                    print(f"[corpusflow dask] {self._name}: {done}/{n} ParDo tasks done "
                          f"({self._tasks} graph tasks)", file=sys.stderr, flush=True)
        except distributed.client.FutureCancelledError as e:
            self._state = PipelineState.FAILED
            raise RuntimeError(f"DaskRunner: {self._name} was cancelled (the scheduler or "
                               f"client went away): {e}") from e
        except Exception as e:
            self._state = PipelineState.FAILED
            self._client.cancel(self._futures)  # the stage's remaining tasks stop here
            if type(e).__name__ == "KilledWorker":
                raise RuntimeError(
                    f"DaskRunner: {self._name} failed: workers died while running one task "
                    f"too many times ({e}); nothing of this stage was published, rerun with "
                    f"--resume") from e
            raise
        finally:
            for f in self._futures:
                f.release()  # finished: let the scheduler forget them (no cancel log lines)
            self._futures = []
        self._counters = total
        self._state = PipelineState.DONE
        return self._state

    def cancel(self) -> str:
        self._client.cancel(self._futures)
        self._state = PipelineState.CANCELLED
        return self._state

    def metrics(self) -> DaskMetrics:
        if self._counters is None:
            self.wait_until_finish()
        return DaskMetrics(self._counters or {})


# ------------------------------------------------------------------ runner
_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _close_all() -> None:
    for key, client in list(_CLIENTS.items()):
        cluster = getattr(client, "_corpusflow_cluster", None)
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass
        _CLIENTS.pop(key, None)


atexit.register(_close_all)


def get_client(address: Optional[str], local_workers: int):
    """A client (cached per process) of the cluster at ``address`` or of a new local one."""
    key = (address, local_workers)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is not None and client.status == "running":
            return client
        import distributed
        if address:
            try:
                client = distributed.Client(address, timeout=30, set_as_default=False)
            except OSError as e:
                raise DaskRunnerError(f"cannot reach the Dask scheduler at {address}: {e}") from None
        else:
            n = local_workers or os.cpu_count() or 1
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               host="127.0.0.1", dashboard_address=None)
            client = distributed.Client(cluster, set_as_default=False)
            client._corpusflow_cluster = cluster
        _CLIENTS[key] = client
        return client


def _input_bytes(globs: Sequence[str]) -> int:
    from apache_beam.io.filesystems import FileSystems
    total = 0
    for g in globs:
        try:
            total += sum(m.size_in_bytes for m in FileSystems.match([g])[0].metadata_list)
        except Exception:  # noqa: BLE001 - the build reports bad globs itself
            pass
    return total


def choose_partitions(requested: int, input_bytes: int, threads: int) -> int:
    """``--dask_partitions``, or max(4 x threads, input bytes / 16 MiB) capped at 4096."""
    if requested:
        return requested
    by_size = math.ceil(input_bytes / TARGET_PARTITION_BYTES)
    return max(1, min(MAX_AUTO_PARTITIONS, max(MIN_PARTITIONS_PER_THREAD * threads, by_size)))


class DaskRunner(_base_runner_class()):
    """Runs a batch Beam pipeline on a ``distributed`` cluster (see the module docstring)."""

    def __init__(self, address: Optional[str] = None, local_workers: int = 0,
                 partitions: int = 0) -> None:
        check_beam_version()
        super().__init__()
        self.address = address
        self.local_workers = local_workers
        self.partitions = partitions
        self._checked: set = set()
        self.last_partitions: Optional[int] = None

    def _settings(self, options: PipelineOptions):
        b = options.view_as(BuildOptions)
        return (self.address or b.dask_address, self.local_workers or b.dask_local_workers,
                self.partitions or b.dask_partitions, b)

    def client(self, options: PipelineOptions):
        address, workers, _, _ = self._settings(options)
        return get_client(address, workers)

    def check_cluster(self, client, b) -> None:
        """Same corpusflow/Beam/Python on every worker, and every local path visible."""
        workers = client.run(_worker_environment)
        if not workers:
            raise DaskRunnerError("the Dask cluster has no workers")
        bad = environment_mismatches(environment(), workers)
        if bad:
            raise DaskRunnerError("Dask workers differ from the driver: " + "; ".join(bad))
        globs, files, probe = [], [], None
        if b is not None and b.input:
            from apache_beam.io.filesystems import FileSystems
            for g in list(b.input) + list(b.decontaminate or []):
                if "://" not in g:
                    globs.append((g, len(FileSystems.match([g])[0].metadata_list)))
            for name in ("vocab_file", "ltp_model", "user_dict", "quality_model"):
                v = getattr(b, name, None)
                if v and "://" not in v and v.lower() != "none":
                    files.append(v)
            if b.output and "://" not in b.output and os.path.isdir(b.output):
                token = uuid.uuid4().hex.encode()
                path = os.path.join(b.output, f".dask-probe-{token.decode()[:12]}")
                with open(path, "wb") as f:
                    f.write(token)
                probe = (path, token)
        try:
            seen = client.run(_probe_paths, probe, globs, files)
        finally:
            if probe is not None and os.path.exists(probe[0]):
                os.remove(probe[0])
        bad = [f"worker {addr} cannot see {p}" for addr, ps in sorted(seen.items()) for p in ps]
        if bad:
            raise DaskRunnerError(
                "local paths must be on a filesystem every Dask worker shares under the same "
                "name (or use gs://): " + "; ".join(bad[:5])
                + (f" ... ({len(bad)} in all)" if len(bad) > 5 else ""))

    def run_pipeline(self, pipeline, options):
        from apache_beam.runners.dask.overrides import dask_overrides
        check_beam_version()
        address, _, requested, b = self._settings(options)
        client = self.client(options)
        key = (id(client), tuple(b.input or ()), b.output)
        if key not in self._checked:
            self.check_cluster(client, b)
            self._checked.add(key)
        threads = sum(client.nthreads().values())
        parts = choose_partitions(requested, _input_bytes(b.input or ()), threads)
        self.last_partitions = parts
        # Beam's Create and Reshuffle overrides give leaf transforms holding the
        # values; its GroupByKey/Read/Flatten overrides are not used (GroupByKey
        # and Flatten are primitives translated here, Read is refused).
        pipeline.replace_all([o for o in dask_overrides()
                              if type(o).__name__ in ("CreateOverride", "ReshuffleOverride")])
        tr = _Translator(parts, uuid.uuid4().hex[:8])
        pipeline.visit(tr)
        futures = client.compute(tr.counter_parts) if tr.counter_parts else []
        name = _stage_name(pipeline)
        return DaskRunResult(client, futures, tr.tasks, bool(getattr(b, "progress", False)), name)


def _stage_name(pipeline) -> str:
    labels = [t.full_label for t in pipeline.transforms_stack[0].parts[:1]]
    return labels[0] if labels else "pipeline"
