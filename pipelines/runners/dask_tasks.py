"""What a Dask worker runs for corpusflow's DaskRunner: fused ParDo tasks and shuffle pieces.

A *fused task* runs a group of ParDos on one partition (see ``dask_translate``):
the group's root DoFn gets the partition's elements one by one, and every
element it emits goes straight into the DoFns fused after it (Beam's own
``DoFnRunner`` per transform, start/process/finish per task, as the local
runner's fused stages do). Only the outputs that leave the group (to a shuffle,
a side input or an unfused consumer) are collected into lists; an output nobody
reads (a sink's file names) is dropped as it is emitted. So a task holds one
element in flight per step plus whatever its DoFns buffer themselves, never a
whole partition of an intermediate PCollection.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import threading
from typing import Any, Optional

from apache_beam.internal import pickler
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.runners.common import DoFnRunner, Receiver
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils import counters as beam_counters

# Per worker process: each transform's spec unpickled once, and its set-up DoFn
# instances kept for later tasks (setup() loads dictionaries and models; paying
# it per task would dominate). One instance serves one task at a time.
# A long-lived cluster serving many builds keeps the last MAX_CACHED_TRANSFORMS
# transforms' instances (a build has a few dozen ParDos); older ones are torn down.
MAX_CACHED_TRANSFORMS = 128
_SPECS: dict[str, "ParDoSpec"] = {}
_IDLE_FNS: dict[str, list] = {}
_LOCK = threading.Lock()


@dataclasses.dataclass
class ParDoSpec:
    """What one ParDo of a fused task needs besides its input (pickled once per transform)."""
    step: str
    fn: Any
    args: tuple
    kwargs: dict
    side_views: list  # (view class, view options) per side input, in order
    windowing: Any


@dataclasses.dataclass(frozen=True)
class Member:
    """One ParDo of a fused group, as the task sees it.

    ``spec`` and ``sides`` index the task's dependency arguments (the pickled
    spec, each side input's values); ``source`` is ``None`` for the group's root
    (it reads the partition) or ``(member index, tag)`` of the output it consumes.
    """
    digest: str
    spec: int
    source: Optional[tuple]
    sides: tuple[int, ...]


def _evict_locked() -> list:
    """Drop the oldest cached transforms beyond the cap; their idle DoFns to tear down."""
    gone = []
    while len(_SPECS) > MAX_CACHED_TRANSFORMS:
        old = next(iter(_SPECS))
        _SPECS.pop(old)
        gone.extend(_IDLE_FNS.pop(old, []))
    return gone


def _teardown(fns) -> None:
    for fn in fns:
        try:
            fn.teardown()
        except Exception:  # noqa: BLE001 - teardown is best effort (as in Beam)
            pass


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
    _teardown(gone)
    return spec, fresh.fn, True


class _Drop(Receiver):
    def receive(self, windowed_value) -> None:
        pass


class _FanOut(Receiver):
    """One output tag: appended to a list when it leaves the group, and/or fed to
    each fused consumer inside that consumer's metrics scope."""

    def __init__(self, out: Optional[list], consumers: list) -> None:
        self.out = out
        self.consumers = consumers  # (DoFnRunner, ScopedState)

    def receive(self, windowed_value) -> None:
        if self.out is not None:
            self.out.append(windowed_value.value)
        for runner, state in self.consumers:
            with state:
                runner.process(windowed_value)


class _Receivers(dict):
    """Declared output tags; outputs to a tag nobody reads are dropped (as Beam)."""

    def __missing__(self, tag):
        return _Drop()


def run_fused(members: tuple, collect: tuple, items: list, *deps):
    """One partition through a fused group: ``(collected lists, {counter key: value})``.

    ``collect`` lists the ``(member index, tag)`` outputs to return, in order.
    Members come in topological order (a consumer after its producer).
    """
    from apache_beam.runners.worker import statesampler
    got = [_spec_and_fn(deps[m.spec], m.digest) for m in members]
    sampler = statesampler.StateSampler("dask", beam_counters.CounterFactory())
    containers = [MetricsContainer(spec.step) for spec, _, _ in got]
    states = [sampler.scoped_state(spec.step, "process", metrics_container=c)
              for (spec, _, _), c in zip(got, containers)]
    outs = {key: [] for key in collect}
    consumers: dict[tuple, list] = {}
    runners: list = [None] * len(members)
    # Consumers first: a producer's receivers hold its consumers' runners.
    for k in reversed(range(len(members))):
        m = members[k]
        spec, fn, _ = got[k]
        tags = {tag for (j, tag) in list(outs) + list(consumers) if j == k} | {None}
        receivers = _Receivers({tag: _FanOut(outs.get((k, tag)), consumers.get((k, tag), []))
                                for tag in tags})
        sides = [SideInputMap(view, opts, [GlobalWindows.windowed_value(v) for v in deps[d]])
                 for (view, opts), d in zip(spec.side_views, m.sides)]
        runners[k] = DoFnRunner(fn, spec.args, spec.kwargs, sides, spec.windowing,
                                tagged_receivers=receivers, step_name=spec.step)
        if m.source is not None:
            consumers.setdefault(m.source, []).append((runners[k], states[k]))
    previous = statesampler.get_current_tracker()
    statesampler.set_current_tracker(sampler)
    ok = False
    try:
        for k, (runner, state) in enumerate(zip(runners, states)):
            with state:
                if got[k][2]:
                    runner.setup()
                runner.start()
        root, root_state = runners[0], states[0]
        with root_state:
            for item in items:
                root.process(GlobalWindows.windowed_value(item))
        for runner, state in zip(runners, states):  # producers first: their finish_bundle
            with state:                               # outputs reach started consumers
                runner.finish()
        ok = True
    finally:
        statesampler.set_current_tracker(previous)
        if ok:
            with _LOCK:
                for m, (_, fn, _) in zip(members, got):
                    _IDLE_FNS.setdefault(m.digest, []).append(fn)
        else:
            _teardown(fn for _, fn, _ in got)  # the task's own error is the one to report
    counters: dict = {}
    for spec_fn, c in zip(got, containers):
        for key, v in c.get_cumulative().counters.items():
            if v:
                k = (spec_fn[0].step, key.metric.namespace, key.metric.name)
                counters[k] = counters.get(k, 0) + int(v)
    return tuple(outs[key] for key in collect), counters


def pick(result: tuple, index: int) -> list:
    """The ``index``-th collected output of a fused task."""
    return result[0][index]


def counters_of(result: tuple) -> dict:
    return result[1]


def concat(*parts: list) -> list:
    out: list = []
    for p in parts:
        out.extend(p)
    return out


def round_robin(items: list, index: int, n: int) -> list[list]:
    """Reshuffle's split: element k of partition ``index`` goes to bucket (index + k) mod n."""
    buckets: list[list] = [[] for _ in range(n)]
    for k, item in enumerate(items):
        buckets[(index + k) % n].append(item)
    return buckets


def _key_bytes(coder, key) -> bytes:
    try:
        return b"c" + coder.encode(key)
    except Exception:  # noqa: BLE001 - a key the deterministic coder refuses
        return b"p" + pickle.dumps(key, protocol=4)


def hash_split(items: list, coder, n: int) -> list[list]:
    """(key bytes, key, value) per bucket; the bucket depends only on the key's bytes."""
    buckets: list[list] = [[] for _ in range(n)]
    for key, value in items:
        kb = _key_bytes(coder, key)
        h = int.from_bytes(hashlib.blake2b(kb, digest_size=8).digest(), "big")
        buckets[h % n].append((kb, key, value))
    return buckets


def group(*pieces: list) -> list:
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


def sum_counters(*parts: dict) -> dict:
    out: dict = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0) + v
    return out
