"""Beam pipeline -> Dask graph for corpusflow's DaskRunner, with ParDo fusion.

A PCollection that is *materialised* is a list of Dask keys, one list of
elements per partition. ``Create``, ``Impulse``, ``Reshuffle``, ``GroupByKey``
and ``Flatten`` make materialised PCollections. ParDos are *fused* into groups
as Beam's local runner fuses them: a ParDo joins the group of the ParDo whose
output it consumes as main input, unless one of its side inputs depends on that
group (which would be a cycle). A group runs as one task per partition of its
root's input (``dask_tasks.run_fused``); only the outputs read outside the group
(by a shuffle, a ``Flatten``, a side input or an unfused ParDo) are collected.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.internal import pickler
from apache_beam.pipeline import PipelineVisitor
from apache_beam.transforms.window import GlobalWindows

from pipelines.runners import dask_tasks as tasks
from pipelines.runners.dask_cluster import DaskRunnerError


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", label).strip("_")[:60] or "step"


class _Group:
    """ParDos fused into one task per partition; ``members[0]`` is the root."""

    def __init__(self, gid: int, root) -> None:
        self.gid = gid
        self.members: list = [root]
        self.emitted = False


class Translator(PipelineVisitor):
    """Collects the leaf transforms, then ``build()`` returns the counter keys to compute."""

    def __init__(self, partitions: int, run_id: str) -> None:
        self.partitions = partitions
        self.run_id = run_id
        self.nodes: list = []
        self.tasks = 0  # graph tasks made
        self.fused_tasks = 0  # of which fused ParDo tasks (progress counts these)
        self._n = 0
        self._parts: dict[pvalue.PCollection, list] = {}
        self._sides: dict[pvalue.PCollection, Any] = {}
        self._producer: dict[pvalue.PCollection, tuple] = {}  # ParDo outputs: (node, tag)
        self._consumers: dict[pvalue.PCollection, list] = {}  # (node, "main" | "side" | "input")
        self._group: dict[Any, _Group] = {}
        self._counters: list = []
        self._ngroups = 0

    # ------------------------------------------------------------ visiting
    def visit_transform(self, node) -> None:
        from apache_beam.runners.dask.overrides import _Create, _Reshuffle
        t = node.transform
        label = node.full_label
        if isinstance(t, beam.ParDo):
            self._check_pardo(node)
        elif not isinstance(t, (_Create, beam.Impulse, _Reshuffle, beam.GroupByKey, beam.Flatten)):
            raise DaskRunnerError(f"DaskRunner cannot run {label!r} "
                                  f"({type(t).__name__}): not a batch ParDo/GroupByKey/"
                                  f"Flatten/Create/Reshuffle")
        self.nodes.append(node)

    @staticmethod
    def _check_pardo(node) -> None:
        from apache_beam.runners.common import DoFnSignature
        label = node.full_label
        for pc in [*node.main_inputs.values(), *node.outputs.values()]:
            wf = pc.windowing.windowfn
            if not isinstance(wf, GlobalWindows):
                raise DaskRunnerError(f"DaskRunner runs batch pipelines in the global window "
                                      f"only; {label!r} uses {type(wf).__name__}")
        sig = DoFnSignature(node.transform.fn)
        if sig.is_stateful_dofn() or sig.is_splittable_dofn():
            raise DaskRunnerError(f"DaskRunner cannot run {label!r}: stateful or splittable DoFn")

    # ------------------------------------------------------------- fusion
    def _plan(self) -> None:
        """Assign every ParDo to a group (nodes are in topological order)."""
        upstream: dict[pvalue.PCollection, frozenset] = {}  # groups a PCollection depends on
        for node in self.nodes:
            t = node.transform
            if isinstance(t, beam.ParDo):
                (main,) = list(node.main_inputs.values())
                sides = [si.pvalue for si in t.side_inputs]
                self._consumers.setdefault(main, []).append((node, "main"))
                for s in sides:
                    self._consumers.setdefault(s, []).append((node, "side"))
                prod = self._producer.get(main)
                group = self._group.get(prod[0]) if prod else None
                if group is None or any(group.gid in upstream.get(s, ()) for s in sides):
                    self._ngroups += 1
                    group = _Group(self._ngroups, node)
                else:
                    group.members.append(node)
                self._group[node] = group
                deps = frozenset({group.gid}).union(upstream.get(main, ()),
                                                    *(upstream.get(s, ()) for s in sides))
                for tag, pc in node.outputs.items():
                    self._producer[pc] = (node, tag)
                    upstream[pc] = deps
            else:
                ins = list(node.inputs)
                for pc in ins:
                    self._consumers.setdefault(pc, []).append((node, "input"))
                deps = frozenset().union(*(upstream.get(pc, ()) for pc in ins))
                for pc in node.outputs.values():
                    upstream[pc] = deps

    # ------------------------------------------------------------ building
    def build(self) -> list:
        """Every group's tasks (so every sink runs); the counter keys to compute."""
        self._plan()
        for node in self.nodes:
            g = self._group.get(node)
            if g is not None and not g.emitted:
                self._emit(g)
        return self._counters

    def _key(self, label: str, i: int | str = "") -> str:
        self._n += 1
        return f"{_safe(label)}-{self.run_id}-{self._n}-{i}"

    def _delayed(self, fn, label: str, i, *args, pure: bool = False):
        from dask import delayed
        self.tasks += 1
        return delayed(fn, pure=pure)(*args, dask_key_name=self._key(label, i))

    def parts(self, pc: pvalue.PCollection) -> list:
        """The partitions of ``pc``, materialising what it needs on first use."""
        if pc not in self._parts:
            prod = self._producer.get(pc)
            if prod is None:
                self._translate(pc.producer)
            elif self._group[prod[0]].emitted:  # read inside its group only: never collected
                raise RuntimeError(f"DaskRunner: {pc} was not collected by its fused task")
            else:
                self._emit(self._group[prod[0]])
        return self._parts[pc]

    def _translate(self, node) -> None:
        from apache_beam.runners.dask.overrides import _Create, _Reshuffle
        t = node.transform
        label = node.full_label
        outs = list(node.outputs.values())
        if isinstance(t, _Create):
            values = list(t.values)
            n = max(1, min(len(values), self.partitions))
            bounds = [len(values) * i // n for i in range(n + 1)]
            # Pickled: Dask would read a literal tuple starting with a callable as a task.
            self._parts[outs[0]] = [
                self._delayed(pickler.loads, label, i, pickler.dumps(values[bounds[i]:bounds[i + 1]]))
                for i in range(n)]
        elif isinstance(t, beam.Impulse):
            self._parts[outs[0]] = [self._delayed(list, label, 0, [b""])]
        elif isinstance(t, _Reshuffle):
            self._parts[outs[0]] = self._shuffle(label, self.parts(node.inputs[0]),
                                                 tasks.round_robin, None)
        elif isinstance(t, beam.GroupByKey):
            self._parts[outs[0]] = self._shuffle(label, self.parts(node.inputs[0]),
                                                 tasks.hash_split, _key_coder(node))
        elif isinstance(t, beam.Flatten):
            self._parts[outs[0]] = [p for pc in node.inputs for p in self.parts(pc)]
        else:  # pragma: no cover - visit_transform refused it
            raise DaskRunnerError(f"DaskRunner cannot run {label!r}")

    def _shuffle(self, label: str, parts: list, split, coder) -> list:
        import operator
        n = self.partitions
        splits = []
        for i, part in enumerate(parts):
            args = (part, i, n) if coder is None else (part, coder, n)
            splits.append(self._delayed(split, f"{label}-split", i, *args))
        return [self._delayed(tasks.concat if coder is None else tasks.group, label, j,
                              *[self._delayed(operator.getitem, f"{label}-piece", f"{i}_{j}", s, j,
                                              pure=True) for i, s in enumerate(splits)])
                for j in range(n)]

    def _side(self, pc: pvalue.PCollection):
        if pc not in self._sides:
            self._sides[pc] = self._delayed(tasks.concat, f"side-{pc.producer.full_label}", 0,
                                            *self.parts(pc))
        return self._sides[pc]

    def _emit(self, g: _Group) -> None:
        """One ``run_fused`` task per partition of the root's input."""
        from dask import delayed
        g.emitted = True
        in_group = {id(m) for m in g.members}
        deps: list = []
        index: dict[str, int] = {}

        def dep(key: str, make) -> int:
            if key not in index:
                index[key] = len(deps)
                deps.append(make())
            return index[key]

        members, collect = [], []
        position = {id(node): k for k, node in enumerate(g.members)}
        for k, node in enumerate(g.members):
            t = node.transform
            (main,) = list(node.main_inputs.values())
            spec = tasks.ParDoSpec(node.full_label, t.fn, tuple(t.args or ()),
                                   dict(t.kwargs or {}),
                                   [(type(si), si._view_options()) for si in t.side_inputs],
                                   main.windowing)
            spec_bytes = pickler.dumps(spec)
            digest = hashlib.sha256(spec_bytes).hexdigest()[:16]
            spec_i = dep(f"spec-{k}", lambda: delayed(spec_bytes, name=self._key(
                f"{node.full_label}-spec")))
            sides = tuple(dep(f"side-{id(si.pvalue)}", lambda si=si: self._side(si.pvalue))
                          for si in t.side_inputs)
            source = None
            if k:
                prod, tag = self._producer[main]
                source = (position[id(prod)], tag)
            members.append(tasks.Member(digest, spec_i, source, sides))
            for tag, pc in node.outputs.items():
                if any(kind != "main" or id(c) not in in_group
                       for c, kind in self._consumers.get(pc, [])):
                    collect.append((k, tag))
        (root_in,) = list(g.members[0].main_inputs.values())
        inputs = self.parts(root_in)
        plan = pickle.dumps((tuple(members), tuple(collect)), protocol=4)
        label = g.members[0].full_label
        outs: list[list] = [[] for _ in collect]
        for i, part in enumerate(inputs):
            task = self._delayed(_run_plan, label, i, plan, part, *deps)
            self.fused_tasks += 1
            for c in range(len(collect)):
                outs[c].append(self._delayed(tasks.pick, f"{label}-out{c}", i, task, c, pure=True))
            self._counters.append(self._delayed(tasks.counters_of, f"{label}-counters", i, task,
                                                pure=True))
        for c, (k, tag) in enumerate(collect):
            self._parts[g.members[k].outputs[tag]] = outs[c]


def _run_plan(plan: bytes, items: list, *deps):
    members, collect = pickle.loads(plan)
    return tasks.run_fused(members, collect, items, *deps)


def _key_coder(node):
    """GroupByKey's deterministic key coder (``_key_bytes`` pickles keys it refuses)."""
    from apache_beam import coders
    from apache_beam.typehints import typehints
    in_type = node.inputs[0].element_type
    key_type = (in_type.tuple_types[0] if isinstance(in_type, typehints.TupleConstraint)
                and len(in_type.tuple_types) == 2 else Any)
    coder = coders.registry.get_coder(key_type)
    try:
        return coder.as_deterministic_coder(node.full_label)
    except ValueError:
        return coder
