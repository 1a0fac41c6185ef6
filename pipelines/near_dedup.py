"""Beam composites for near-duplicate removal and decontamination.

Documents are never shuffled. ``NearDedup`` reads ``(doc_id, source, text)`` once,
computes compact keys and returns *decisions*; the caller applies them in a second
streaming pass over the documents (as a side input). Shuffled per document:
``bands`` band keys each carrying the graph node and the num_perm-byte b-bit
sketch, the sketch once more for the final join, and a few edges for documents
that have near duplicates. Per-document cost does not depend on corpus size; a
bucket's cost is capped by ``bucket_cap``.

Steps (each a GroupByKey or CoGroupByKey; labels are stable):
  Signatures   per document: comparison form -> shingles -> MinHash -> band keys
  Buckets      group by band key; verify all pairs of the bucket at once (a star
               from the bucket's smallest member beyond bucket_cap); emit a
               spanning forest of the verified pairs
  CC           ``cc_rounds`` rounds of large-star + small-star over the edges
               (no union-find over the corpus); a convergence counter
  Resolve      join sketches and labels; group by component minimum = kept
               document; similarity of each member to it; one removal per other
               member, one cluster record
"""

from __future__ import annotations

import io
from typing import Callable, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import TaggedOutput

from corpusflow.dedup import decontam as dc
from corpusflow.dedup import minhash as mh
from corpusflow.dedup.decontam import DecontamConfig
from corpusflow.dedup.minhash import NearDedupConfig
from pipelines.beam_util import BeamInc

__all__ = ["NearDedup", "NearDedupConfig", "ConnectedComponents", "Decontaminate",
           "DecontamConfig", "DecontamPerFile", "expand_eval_globs"]


def _t2s_converter() -> Callable[[str], str]:
    import opencc  # only when asked for: the clean stage normally did T->S already
    return opencc.OpenCC("t2s").convert


# --- signatures and buckets ----------------------------------------------------------

class _SignatureFn(beam.DoFn):
    """(doc_id, source, text) -> (bucket key, encoded member); "sketch": (node, sketch)."""

    def __init__(self, cfg: NearDedupConfig) -> None:
        self._cfg = cfg

    def setup(self) -> None:
        self._signer = mh.Signer(self._cfg.num_perm, self._cfg.seed)
        self._t2s = _t2s_converter() if self._cfg.t2s else None
        self._inc = BeamInc()

    def process(self, doc: tuple[str, str, str]):
        doc_id, source, text = doc
        dk = mh.document_keys(doc_id, source, text, self._cfg, self._signer, self._inc, self._t2s)
        if dk is None:
            return
        yield TaggedOutput("sketch", (dk.node, dk.sketch))
        value = dk.member()
        for key in dk.keys:
            yield key, value


class _BucketEdgesFn(beam.DoFn):
    def __init__(self, cfg: NearDedupConfig) -> None:
        self._cfg = cfg

    def setup(self) -> None:
        self._inc = BeamInc()

    def process(self, kv):
        yield from mh.bucket_edges(kv[1], self._cfg, self._inc)


# --- connected components ----------------------------------------------------------

def _both_directions(edge: mh.Edge):
    a, b = edge
    yield a, b
    yield b, a


class _StarStep(beam.PTransform):
    """One large-star or small-star step: group edges by node, re-emit edges."""

    def __init__(self, fn: Callable[[mh.Node, Iterable[mh.Node]], list]) -> None:
        super().__init__()
        self._fn = fn

    def expand(self, edges):
        fn = self._fn
        return (edges
                | "Adjacency" >> beam.FlatMap(_both_directions)
                | "ByNode" >> beam.GroupByKey()
                | "Emit" >> beam.FlatMap(lambda kv: fn(kv[0], kv[1])))


class _LabelFn(beam.DoFn):
    def setup(self) -> None:
        self._inc = BeamInc()

    def process(self, kv):
        node, nbrs = kv
        label, converged = mh.star_label(node, nbrs)
        if not converged:
            self._inc("neardup:cc_unconverged")
        yield node, label


class ConnectedComponents(beam.PTransform):
    """Edges ``(a, b)`` -> ``(node, label)`` for every node on an edge.

    ``rounds`` rounds of alternating large-star/small-star (Kiveris et al. 2014).
    Measured rounds to converge (tests/test_minhash.py): a randomly numbered path
    of 1,000 nodes needs 8, of 100 nodes 6; random sparse graphs of 10^5 nodes 5;
    near-dup clusters (cliques and stars) 1-2. If a component has not converged,
    ``neardup:cc_unconverged`` counts its nodes and its labels may not be the
    minimum; resolution then keeps those documents rather than remove them.
    """

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self._rounds = rounds

    def expand(self, edges):
        for i in range(self._rounds):
            edges = edges | f"LargeStar{i}" >> _StarStep(mh.large_star)
            edges = edges | f"SmallStar{i}" >> _StarStep(mh.small_star)
        return (edges
                | "Adjacency" >> beam.FlatMap(_both_directions)
                | "ByNode" >> beam.GroupByKey()
                | "Label" >> beam.ParDo(_LabelFn()))


# --- resolution -----------------------------------------------------------------------

def _route(kv):
    """Node with its sketch and label -> "root" (labelled itself) or (label, member)."""
    node, grouped = kv
    sketch = next(iter(grouped["sketch"]), None)
    for label in grouped["label"]:
        if label == node:
            yield TaggedOutput("root", (node, sketch))
        else:
            yield label, (node, sketch)


class _ResolveFn(beam.DoFn):
    def setup(self) -> None:
        self._inc = BeamInc()

    def process(self, kv):
        root, grouped = kv
        root_sketch = next(iter(grouped["root"]), None)
        record, dropped = mh.resolve_cluster(root, root_sketch, grouped["member"], self._inc)
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

    Counters ``neardup:*`` (see ``corpusflow.dedup.minhash.COUNTERS``).
    """

    def __init__(self, config: Optional[NearDedupConfig] = None,
                 tmp_dir: Optional[str] = None) -> None:
        super().__init__()
        self._cfg = config or NearDedupConfig()

    def expand(self, docs):
        cfg = self._cfg
        keyed = docs | "Signatures" >> beam.ParDo(_SignatureFn(cfg)).with_outputs("sketch",
                                                                                   main="keys")
        edges = (keyed.keys
                 | "GroupByBucket" >> beam.GroupByKey()
                 | "BucketEdges" >> beam.ParDo(_BucketEdgesFn(cfg)))
        # The same pair is verified in every bucket it shares: collapse it once here
        # rather than carry the copies through every CC step.
        edges = edges | "DistinctEdges" >> beam.Distinct()
        labels = edges | "CC" >> ConnectedComponents(cfg.cc_rounds)
        routed = ({"sketch": keyed.sketch, "label": labels}
                  | "JoinLabels" >> beam.CoGroupByKey()
                  | "Route" >> beam.FlatMap(_route).with_outputs("root", main="members"))
        resolved = ({"root": routed.root, "member": routed.members}
                    | "ByComponent" >> beam.CoGroupByKey()
                    | "Resolve" >> beam.ParDo(_ResolveFn()).with_outputs("clusters", main="dropped"))
        return {"dropped": resolved.dropped, "clusters": resolved.clusters}


# --- decontamination ----------------------------------------------------------------------

class _DecontamFn(beam.DoFn):
    def __init__(self, eval_paths: Sequence[str], cfg: DecontamConfig) -> None:
        self._paths = list(eval_paths)
        self._cfg = cfg

    def setup(self) -> None:
        # Each worker builds the index from the eval files (a few MB of n-gram hashes).
        self._index = dc.EvalIndex.from_paths(self._paths, self._cfg, opener=_open_beam)
        self._inc = BeamInc()

    def process(self, doc: tuple[str, str, str]):
        doc_id, _, text = doc
        hit = self._index.check(text, self._inc)
        if hit is not None:
            yield doc_id, hit


def _open_beam(path: str) -> io.TextIOBase:
    return io.TextIOWrapper(FileSystems.open(path), encoding="utf-8", errors="replace")


def expand_eval_globs(globs: Sequence[str]) -> list[str]:
    """Every file matched by the globs, sorted; a glob matching nothing is an error."""
    paths: list[str] = []
    for g in globs:
        matched = [m.path for r in FileSystems.match([g]) for m in r.metadata_list]
        if not matched:
            raise ValueError(f"--decontaminate glob matched no files: {g}")
        paths.extend(matched)
    return sorted(set(paths))


class Decontaminate(beam.PTransform):
    """Documents sharing long character n-grams with evaluation sets.

    Input ``(doc_id, source, text)``; output ``(doc_id, {"reason": "decontaminated",
    "eval_file": basename, "eval_path", "matched_ngrams", "action", "excerpt"})``
    for each contaminated document (use ``DecontamPerFile`` for counts per file).
    Counters ``decontam:checked`` and ``decontam:removed``. Globs are expanded when
    the pipeline is built; one matching nothing is an error.
    """

    def __init__(self, eval_globs: Sequence[str], config: Optional[DecontamConfig] = None) -> None:
        super().__init__()
        self._paths = expand_eval_globs(eval_globs)
        self._cfg = config or DecontamConfig()

    def expand(self, docs):
        return docs | "Check" >> beam.ParDo(_DecontamFn(self._paths, self._cfg))


class DecontamPerFile(beam.PTransform):
    """``Decontaminate`` output -> ``(eval file basename, documents flagged)``."""

    def expand(self, flagged):
        return (flagged
                | "EvalFile" >> beam.Map(lambda kv: kv[1]["eval_file"])
                | "Count" >> beam.combiners.Count.PerElement())
