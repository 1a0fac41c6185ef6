"""A Dask runner corpusflow owns: Beam 2.77's ``DaskRunner`` with its translation replaced.

``--runner DaskRunner`` runs every stage of ``python -m pipelines.build`` on a
``distributed`` cluster (``--dask_address tcp://HOST:PORT``) or on a local
multi-process one started for the run (``--dask_local_workers N``). Outputs are
byte-identical to the local runner's (tests/test_dask_runner.py proves it on a
real scheduler and two worker processes).

What Beam 2.77's own DaskRunner gets wrong, and what this one does instead:

1. Only the last bag of the pipeline was computed, so every other sink wrote
   nothing. Here every fused task is a dependency of the run's counter keys,
   so every sink runs (and only counters are fetched to the driver).
2. A multi-output ParDo fed all of its outputs, tagged or not, to every
   consumer. Here each output tag has its own receiver and PCollection.
3. Outputs emitted in ``finish_bundle`` were dropped. Here Beam's
   ``DoFnRunner`` runs start/process/finish per task and its receivers get all.
4. ``result.metrics()`` raised NotImplementedError. Here every step of a task
   counts in its own ``MetricsContainer`` and the task returns its counters; a
   task retried after a worker died counts once (only its successful result
   is kept), so counters are "committed" values.
5. Side inputs were recomputed inside every task. Here a side input is one
   task whose result every consumer depends on.
6. ``Reshuffle`` was a no-op and ``Create`` packed 128 elements per partition
   (six input files became one task). Here ``Create`` makes one partition per
   element up to the partition count, and ``Reshuffle`` / ``GroupByKey`` are
   real shuffles into that many partitions (hash of the deterministic key
   encoding for GroupByKey, round robin for Reshuffle).

And what it adds: ParDo fusion (``dask_translate``). Beam's DaskRunner made one
Dask bag per transform, so each ParDo materialised its whole partition and a
worker held it until the next ParDo ran: worker memory grew with the corpus
(1.1 GB at 200 MB of input on one worker, where every docs shard and input
file is 10x larger than at 20 MB). Here consecutive ParDos run as one task and
pass elements one at a time, as on the local runner.

Limits (also in the README, "Beyond one machine without Google Cloud: Dask"):

* Memory per task: one element in flight per fused step, what the DoFns
  buffer themselves (corpusflow's spill buffers, 32 MiB of payload), the
  outputs that leave the group (the input of a shuffle, a side input) for the
  task's partition, and each side input it reads, whole. A shuffle holds all
  of its input until its reducers have run; corpusflow's stages spill records
  to sorted run files first, so only run paths, keys and counts are shuffled.
* Parallelism: every shuffle (``GroupByKey``, ``Reshuffle``) and ``Create``
  uses the same partition count P: ``--dask_partitions N``, or by default
  ``max(4 x worker threads, ceil(input bytes / 16 MiB))`` capped at 4096,
  where the input bytes are those of every glob among the options. One input
  file (one element of ``Create``) is never split.
* Only the global window (batch pipelines); no state, timers, splittable
  DoFns, ``Read`` of a BoundedSource or TestStream: such a pipeline is refused
  with a message naming the transform.
* Paths must be visible to every worker under the same name (a shared
  filesystem, or gs://): the driver checks that before the first stage
  (``dask_cluster``).
* One thread per worker process is what corpusflow's DoFns are tested with
  (``--dask_local_workers`` starts workers that way; start ``dask worker
  --nthreads 1``); DoFn instances are set up once per process and reused.

Modules: ``dask_runner`` (this: the runner and its result), ``dask_translate``
(Beam graph to Dask graph, fusion), ``dask_tasks`` (what workers run),
``dask_cluster`` (clients, environment and path checks).
"""

from __future__ import annotations

import math
import sys
import time
import uuid
from typing import Any, Optional

from apache_beam.metrics.execution import MetricKey, MetricResult
from apache_beam.metrics.metric import MetricName, MetricResults
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult, PipelineState

from pipelines.runners import beam_version
from pipelines.runners.dask_cluster import (DaskRunnerError, SharedPaths, check_cluster,
                                            get_client, glob_bytes)
from pipelines.runners.dask_tasks import sum_counters
from pipelines.runners.dask_translate import Translator

__all__ = ["DaskRunner", "DaskRunnerError", "DaskRunResult", "DaskMetrics", "SharedPaths",
           "check_beam_version", "choose_partitions"]

#: Input bytes per partition the default partition count aims at.
TARGET_PARTITION_BYTES = 16 << 20
MIN_PARTITIONS_PER_THREAD = 4
MAX_AUTO_PARTITIONS = 4096
PROGRESS_EVERY_S = 10.0


def check_beam_version(version: Optional[str] = None) -> None:
    """Refuse a Beam release this runner was not tested with: it replaces Beam's
    DaskRunner translation and reuses Beam internals (DoFnRunner, the
    Create/Reshuffle overrides, StateSampler) that change without notice."""
    beam_version.check_beam_version("--runner DaskRunner",
                                    "(pip install -e '.[dask]') or use another runner", version)


def choose_partitions(requested: int, input_bytes: int, threads: int) -> int:
    """``--dask_partitions``, or max(4 x threads, input bytes / 16 MiB) capped at 4096."""
    if requested:
        return requested
    by_size = math.ceil(input_bytes / TARGET_PARTITION_BYTES)
    return max(1, min(MAX_AUTO_PARTITIONS, max(MIN_PARTITIONS_PER_THREAD * threads, by_size)))


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
                total = sum_counters(total, part)
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
def _base_runner_class():
    from apache_beam.runners.dask.dask_runner import DaskRunner as BeamDaskRunner
    return BeamDaskRunner


class DaskRunner(_base_runner_class()):
    """Runs a batch Beam pipeline on a ``distributed`` cluster (see the module docstring).

    What it is not given here it reads from the pipeline options by name:
    ``dask_address``, ``dask_local_workers``, ``dask_partitions``, ``progress``,
    and as ``paths`` every absolute local path among the option values.
    """

    def __init__(self, address: Optional[str] = None, local_workers: int = 0,
                 partitions: int = 0, paths: Optional[SharedPaths] = None,
                 progress: Optional[bool] = None) -> None:
        check_beam_version()
        super().__init__()
        self.address = address
        self.local_workers = local_workers
        self.partitions = partitions
        self.paths = paths
        self.progress = progress
        self._checked: set = set()
        self.last_partitions: Optional[int] = None
        self.last_translation: Optional[Translator] = None

    def _settings(self, options: PipelineOptions) -> tuple:
        opts: dict[str, Any] = options.get_all_options(drop_default=False)
        paths = self.paths if self.paths is not None else SharedPaths.from_values(opts.values())
        progress = self.progress if self.progress is not None else bool(opts.get("progress"))
        return (self.address or opts.get("dask_address"),
                self.local_workers or opts.get("dask_local_workers") or 0,
                self.partitions or opts.get("dask_partitions") or 0, paths, progress)

    def client(self, options: PipelineOptions):
        address, workers, _, _, _ = self._settings(options)
        return get_client(address, workers)

    def run_pipeline(self, pipeline, options):
        from apache_beam.runners.dask.overrides import dask_overrides
        check_beam_version()
        address, workers, requested, paths, progress = self._settings(options)
        client = get_client(address, workers)
        key = (id(client), paths)
        if key not in self._checked:
            check_cluster(client, paths)
            self._checked.add(key)
        threads = sum(client.nthreads().values())
        parts = choose_partitions(requested, glob_bytes(paths.globs), threads)
        self.last_partitions = parts
        # Beam's Create and Reshuffle overrides give leaf transforms holding the
        # values; its GroupByKey/Read/Flatten overrides are not used (GroupByKey
        # and Flatten are primitives translated here, Read is refused).
        pipeline.replace_all([o for o in dask_overrides()
                              if type(o).__name__ in ("CreateOverride", "ReshuffleOverride")])
        tr = Translator(parts, uuid.uuid4().hex[:8])
        pipeline.visit(tr)
        counters = tr.build()
        self.last_translation = tr
        futures = client.compute(counters) if counters else []
        return DaskRunResult(client, futures, tr.tasks, progress, _stage_name(pipeline))


def _stage_name(pipeline) -> str:
    labels = [t.full_label for t in pipeline.transforms_stack[0].parts[:1]]
    return labels[0] if labels else "pipeline"
