"""Beam composites for near-duplicate removal and decontamination.

Documents are never shuffled. ``NearDedup`` reads ``(doc_id, source, text)`` once,
computes compact keys and returns *decisions*; the caller applies them in another
streaming pass over the documents (``pipelines/dedup_join.py``).

Memory is flat in input size on any runner: no step groups records with a
``GroupByKey``. As in exact dedup, every step spills its records to sorted run
files (``spill_step.SpillStep``: one run per key-range bucket per flush); only
the run files' names are grouped, by bucket, and the next step k-way merges one
bucket's runs (``merge_runs``, at most 64 files open, larger sets in passes)
and reads each key's records together, in byte order. What a step holds is one
key's records: a bucket's first ``bucket_cap + 1`` members, a node's neighbours,
a component's members. On Dataflow the same runs live under the temp location
and each bucket is merged by one worker.

Steps (run directories under ``tmp_dir``; labels are stable):
  Signatures   per document: comparison form -> shingles -> MinHash -> band keys;
               spills ``(band key, node, b-bit sketch)`` (``bands/``) and
               ``(node, "S", sketch)`` (``join/``)
  Buckets      per band key, members in node order: all pairs verified up to
               ``bucket_cap`` (a spanning forest of the verified pairs), beyond it
               a star from the smallest member; edges spilled both ways (``cc0/``)
  CC           ``cc_rounds`` rounds of large-star + small-star (Kiveris et al.
               2014, ``connected_components``), each reading one node's
               neighbours at a time; the final
               labels spilled as ``(node, "L", label)`` (``join/``); a convergence
               counter
  Route        per node: its label and sketch; the component root as
               ``(root, 0, sketch)``, every other member as ``(label, 1, node,
               sketch)`` (``resolve/``)
  Resolve      per component (root first): similarity of each member to the
               kept document; one removal per member, one cluster record

Byte order of every record is the order the step needs: nodes sort as the
kept-document order (``minhash.make_node``) and are written escaped
(``spill_step.esc``: order-preserving, never a prefix of another), so a bucket's
members arrive smallest first and a component's root before its members.

Decontamination (``Decontaminate``, ``DecontamPerFile``) lives in
``pipelines/decontaminate.py``; it is re-exported here for existing callers.
"""

from __future__ import annotations

import itertools
import tempfile
from typing import Callable, Optional

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from corpusflow.dedup import minhash as mh
from corpusflow.dedup.minhash import NearDedupConfig
from pipelines.beam_util import BeamInc
from pipelines.connected_components import LABEL, ConnectedComponentRuns
# Transitional re-exports: callers still import these from here (see the docstring).
from pipelines.decontaminate import (DecontamConfig, Decontaminate, DecontamPerFile,
                                     expand_eval_globs)
from pipelines.spill_step import (END, NUM_BUCKETS, SPILL_BYTES, SpillStep, by_node, esc,
                                  grouped, h64, merged_runs, unesc)

__all__ = ["NearDedup", "NearDedupConfig", "Decontaminate", "DecontamConfig", "DecontamPerFile",
           "expand_eval_globs"]

_SKETCH = b"S"
_ROOT = b"\x00"
_MEMBER = b"\x01"


def _t2s_converter() -> Callable[[str], str]:
    import opencc  # only when asked for: the clean stage normally did T->S already
    return opencc.OpenCC("t2s").convert


# --- signatures and buckets ----------------------------------------------------------

class _SignatureFn(SpillStep):
    """(doc_id, source, text) -> band records (main) and its sketch record ("sketch")."""

    def __init__(self, cfg: NearDedupConfig, tmp_dir: str, num_buckets: int,
                 spill_bytes: int) -> None:
        super().__init__({"main": f"{tmp_dir}/bands", "sketch": f"{tmp_dir}/join"},
                         num_buckets, spill_bytes)
        self._cfg = cfg
        # One sketch record per document against ``bands`` band records: a buffer
        # that size would rarely fill on small inputs and then hold 16 MB more
        # on large ones (the stage's memory would grow with input up to it).
        self._sketch_bytes = max(1, spill_bytes // 8)

    def start_bundle(self) -> None:
        super().start_bundle()
        self._spills["sketch"].spill_bytes = self._sketch_bytes

    def setup(self) -> None:
        super().setup()
        self._signer = mh.Signer(self._cfg.num_perm, self._cfg.seed)
        self._t2s = _t2s_converter() if self._cfg.t2s else None

    def handle(self, doc: tuple[str, str, str]):
        doc_id, source, text = doc
        dk = mh.document_keys(doc_id, source, text, self._cfg, self._signer, self.inc, self._t2s)
        if dk is None:
            return
        node = esc(dk.node)
        self.emit("sketch", h64(dk.node), node + _SKETCH + dk.sketch)
        member = node + dk.sketch
        for key in dk.keys:
            self.emit("main", h64(key), esc(key) + member)
        return
        yield  # a generator


class _BucketEdgesFn(SpillStep):
    """One bucket's band records -> verified edges, per band key in node order."""

    def __init__(self, cfg: NearDedupConfig, out_dir: str, num_buckets: int,
                 spill_bytes: int) -> None:
        super().__init__({"main": out_dir}, num_buckets, spill_bytes)
        self._cfg = cfg

    def handle(self, element):
        def split(p: bytes) -> tuple[bytes, bytes, bytes]:
            key_end = p.index(END) + 2  # the escaped band key, kept as it is
            node, i = unesc(p, key_end)
            return p[:key_end], node, p[i:]
        for _, group in itertools.groupby(map(split, merged_runs(element)), key=lambda t: t[0]):
            for a, b in mh.sorted_bucket_edges(((n, s) for _, n, s in group), self._cfg, self.inc):
                self.emit_edge(a, b)
        return
        yield  # a generator


# --- resolution -----------------------------------------------------------------------

class _RouteFn(SpillStep):
    """Per node, its label and sketch -> the root record or a member record of its component."""

    def __init__(self, out_dir: str, num_buckets: int, spill_bytes: int) -> None:
        super().__init__({"main": out_dir}, num_buckets, spill_bytes)

    def handle(self, element):
        for node, rests in by_node(merged_runs(element)):
            labels, sketch = [], None
            for rest in rests:  # "L" records sort before "S" records
                if rest[:1] == LABEL:
                    labels.append(rest[1:])
                elif sketch is None:
                    sketch = rest[1:]
            if sketch is None:
                continue
            for label in labels:  # none for a document without near duplicates
                if label == node:
                    self.emit("main", h64(node), esc(node) + _ROOT + sketch)
                else:
                    self.emit("main", h64(label), esc(label) + _MEMBER + esc(node) + sketch)
        return
        yield  # a generator


class _ResolveFn(beam.DoFn):
    """Per component, root first: one removal per other member, one cluster record."""

    def setup(self) -> None:
        self._inc = BeamInc()

    def process(self, element):
        for root, rests in by_node(merged_runs(element)):
            root_sketch, members = None, []
            for rest in rests:
                if rest[:1] == _ROOT:
                    root_sketch = rest[1:] if root_sketch is None else root_sketch
                else:
                    node, i = unesc(rest, 1)
                    members.append((node, rest[i:]))
            record, dropped = mh.resolve_cluster(root, root_sketch, members, self._inc)
            if record is not None:
                yield TaggedOutput("clusters", record)
            yield from dropped


class NearDedup(beam.PTransform):
    """MinHash-LSH near-duplicate decisions for ``(doc_id, source, text)`` records.

    Returns a dict of PCollections:

    - ``"dropped"``: ``(doc_id, {"kept_id", "cluster_id", "similarity", "reason":
      "near_duplicate"})``, one per removed document; ``similarity`` is the
      sketch-estimated Jaccard with the kept document (rounded to 4 places).
    - ``"clusters"``: ``{"cluster_id", "kept_id", "members": [{"id", "source",
      "similarity"}, ...], "size"}`` per cluster of size >= 2; the kept document is
      the first member, the rest follow in kept-document order.

    Run files go under ``tmp_dir`` (default: a new local temp folder); the caller
    removes it once the pipeline is done. Counters ``neardup:*`` (see
    ``corpusflow.dedup.minhash.COUNTERS``).
    """

    def __init__(self, config: Optional[NearDedupConfig] = None,
                 tmp_dir: Optional[str] = None, num_buckets: int = NUM_BUCKETS,
                 spill_bytes: int = SPILL_BYTES) -> None:
        super().__init__()
        self._cfg = config or NearDedupConfig()
        self._tmp = tmp_dir or tempfile.mkdtemp(prefix="near_dedup-")
        self._nb = num_buckets
        self._sb = spill_bytes

    def expand(self, docs):
        cfg, tmp, nb, sb = self._cfg, self._tmp, self._nb, self._sb
        signed = docs | "Signatures" >> beam.ParDo(_SignatureFn(cfg, tmp, nb, sb)).with_outputs(
            "sketch", main="bands")
        edges = (grouped(signed.bands, "BandsByBucket")
                 | "BucketEdges" >> beam.ParDo(_BucketEdgesFn(cfg, f"{tmp}/cc0", nb, sb)))
        labels = edges | "CC" >> ConnectedComponentRuns(cfg.cc_rounds, tmp, f"{tmp}/join", nb, sb)
        routed = (grouped((signed.sketch, labels) | "JoinRuns" >> beam.Flatten(), "JoinByBucket")
                  | "Route" >> beam.ParDo(_RouteFn(f"{tmp}/resolve", nb, sb)))
        resolved = (grouped(routed, "ComponentsByBucket")
                    | "Resolve" >> beam.ParDo(_ResolveFn()).with_outputs("clusters", main="dropped"))
        return {"dropped": resolved.dropped, "clusters": resolved.clusters}
