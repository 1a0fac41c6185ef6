"""Connected components of a graph too large for memory, as spilled large/small-star rounds.

Alternating large-star and small-star steps (Kiveris et al. 2014,
``corpusflow.dedup.minhash``), each a ``SpillStep`` that merges the previous
step's adjacency runs one node at a time. Near dedup runs it on its verified
edges (``near_dedup.NearDedup``); ``ConnectedComponents`` is the same on a
PCollection of edges.
"""

from __future__ import annotations

import tempfile
from typing import Callable, Iterable, Optional

import apache_beam as beam

from corpusflow.dedup import minhash as mh
from pipelines.spill_step import (NUM_BUCKETS, SPILL_BYTES, SpillStep, by_node, esc, grouped,
                                  h64, merged_runs)

#: Marks a label record ``esc(node) + LABEL + label``; sorts before near dedup's sketches.
LABEL = b"L"


class _StarFn(SpillStep):
    """One bucket's adjacency records -> the edges of one large- or small-star step."""

    def __init__(self, fn: Callable[[mh.Node, Iterable[mh.Node]], list], out_dir: str,
                 num_buckets: int, spill_bytes: int) -> None:
        super().__init__({"main": out_dir}, num_buckets, spill_bytes)
        self._fn = fn

    def handle(self, element):
        for node, nbrs in by_node(merged_runs(element)):
            for a, b in self._fn(node, set(nbrs)):
                self.emit_edge(a, b)
        return
        yield  # a generator


class _LabelFn(SpillStep):
    """One bucket's final adjacency records -> ``(node, "L", label)`` records."""

    def __init__(self, out_dir: str, num_buckets: int, spill_bytes: int) -> None:
        super().__init__({"main": out_dir}, num_buckets, spill_bytes)

    def handle(self, element):
        for node, nbrs in by_node(merged_runs(element)):
            label, converged = mh.star_label(node, set(nbrs))
            if not converged:
                self.inc("neardup:cc_unconverged")
            self.emit("main", h64(node), esc(node) + LABEL + label)
        return
        yield  # a generator


class ConnectedComponentRuns(beam.PTransform):
    """Adjacency runs -> label runs ``(node, "L", label)`` written to ``label_dir``."""

    def __init__(self, rounds: int, tmp_dir: str, label_dir: str, num_buckets: int,
                 spill_bytes: int) -> None:
        super().__init__()
        self._rounds = rounds
        self._tmp = tmp_dir
        self._label_dir = label_dir
        self._nb = num_buckets
        self._sb = spill_bytes

    def expand(self, runs):
        step = 0
        for i in range(self._rounds):
            for name, fn in (("LargeStar", mh.large_star), ("SmallStar", mh.small_star)):
                step += 1
                runs = (grouped(runs, f"{name}{i}ByBucket")
                        | f"{name}{i}" >> beam.ParDo(_StarFn(fn, f"{self._tmp}/cc{step}",
                                                             self._nb, self._sb)))
        return (grouped(runs, "LabelByBucket")
                | "Label" >> beam.ParDo(_LabelFn(self._label_dir, self._nb, self._sb)))


class _SpillEdgesFn(SpillStep):
    def __init__(self, out_dir: str, num_buckets: int, spill_bytes: int) -> None:
        super().__init__({"main": out_dir}, num_buckets, spill_bytes)

    def handle(self, edge: mh.Edge):
        self.emit_edge(*edge)
        return
        yield  # a generator


def _read_labels(element):
    for node, rests in by_node(merged_runs(element)):
        for rest in rests:
            yield node, rest[len(LABEL):]


class ConnectedComponents(beam.PTransform):
    """Edges ``(a, b)`` of bytes nodes -> ``(node, label)`` for every node on an edge.

    ``rounds`` rounds of alternating large-star/small-star (Kiveris et al. 2014),
    each step a merge of spilled runs. Measured rounds to converge
    (tests/test_minhash.py): a randomly numbered path of 1,000 nodes needs 8, of
    100 nodes 6; random sparse graphs of 10^5 nodes 5; near-dup clusters (cliques
    and stars) 1-2. If a component has not converged, ``neardup:cc_unconverged``
    counts its nodes and its labels may not be the minimum; resolution then keeps
    those documents rather than remove them.
    """

    def __init__(self, rounds: int, tmp_dir: Optional[str] = None,
                 num_buckets: int = NUM_BUCKETS, spill_bytes: int = SPILL_BYTES) -> None:
        super().__init__()
        self._rounds = rounds
        self._tmp = tmp_dir or tempfile.mkdtemp(prefix="cc-")
        self._nb = num_buckets
        self._sb = spill_bytes

    def expand(self, edges):
        runs = edges | "SpillEdges" >> beam.ParDo(_SpillEdgesFn(f"{self._tmp}/cc0", self._nb,
                                                                self._sb))
        labels = runs | "CC" >> ConnectedComponentRuns(self._rounds, self._tmp,
                                                       f"{self._tmp}/labels", self._nb, self._sb)
        return grouped(labels, "LabelsByBucket") | "ReadLabels" >> beam.FlatMap(_read_labels)
