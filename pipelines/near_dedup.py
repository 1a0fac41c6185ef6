"""Beam composites for near-duplicate removal and decontamination.

Documents are never shuffled. ``NearDedup`` reads ``(doc_id, source, text)`` once,
computes compact keys and returns *decisions*; the caller applies them in another
streaming pass over the documents (``pipelines/dedup_join.py``).

Memory is flat in input size on any runner: no step groups records with a
``GroupByKey``. As in exact dedup, every step spills its records to sorted run
files (``sharded_write.Spill``: one run per key-range bucket per flush); only the
run files' names are grouped, by bucket, and the next step k-way merges one
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
               2014), each reading one node's neighbours at a time; the final
               labels spilled as ``(node, "L", label)`` (``join/``); a convergence
               counter
  Route        per node: its label and sketch; the component root as
               ``(root, 0, sketch)``, every other member as ``(label, 1, node,
               sketch)`` (``resolve/``)
  Resolve      per component (root first): similarity of each member to the
               kept document; one removal per member, one cluster record

Byte order of every record is the order the step needs: nodes sort as the
kept-document order (``minhash.make_node``) and are written escaped
(``_esc``: order-preserving, never a prefix of another), so a bucket's members
arrive smallest first and a component's root before its members.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import tempfile
from typing import Callable, Iterable, Iterator, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import TaggedOutput

from corpusflow.dedup import decontam as dc
from corpusflow.dedup import minhash as mh
from corpusflow.dedup.decontam import DecontamConfig
from corpusflow.dedup.minhash import NearDedupConfig
from pipelines.beam_util import BeamInc
from pipelines.sharded_write import Spill, merge_runs

__all__ = ["NearDedup", "NearDedupConfig", "ConnectedComponents", "Decontaminate",
           "DecontamConfig", "DecontamPerFile", "expand_eval_globs"]

# Key-range buckets of every run file here (one merge per bucket and step).
NUM_BUCKETS = 16
SPILL_BYTES = 16 << 20

_END = b"\x00\x00"
_SKETCH = b"S"
_LABEL = b"L"
_ROOT = b"\x00"
_MEMBER = b"\x01"


def _t2s_converter() -> Callable[[str], str]:
    import opencc  # only when asked for: the clean stage normally did T->S already
    return opencc.OpenCC("t2s").convert


def _esc(b: bytes) -> bytes:
    """NUL -> NUL 0x01, then NUL NUL: byte order is the order of the inputs, and
    no encoding is a prefix of another, so fields can follow it."""
    return b.replace(b"\x00", b"\x00\x01") + _END


def _unesc(data: bytes, start: int = 0) -> tuple[bytes, int]:
    """The field escaped at ``data[start:]`` and the offset just after it."""
    end = data.index(_END, start)
    return data[start:end].replace(b"\x00\x01", b"\x00"), end + 2


def _h64(b: bytes) -> int:
    """Sort key of a band key or node: spreads them over the key-range buckets."""
    return int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "big")


def _merged(element) -> Iterator[bytes]:
    """Payloads of one bucket's runs ``(bucket, [(path, count, ...), ...])``, merged."""
    _, runs = element
    for _, payload in merge_runs(sorted(r[0] for r in runs)):
        yield payload


def _by_node(payloads: Iterable[bytes]) -> Iterator[tuple[bytes, Iterator[bytes]]]:
    """``esc(node) + rest`` records -> ``(node, rests)`` per node, in order."""
    def split(p: bytes) -> tuple[bytes, bytes]:
        node, i = _unesc(p)
        return node, p[i:]
    for node, group in itertools.groupby(map(split, payloads), key=lambda t: t[0]):
        yield node, (rest for _, rest in group)


class _SpillStep(beam.DoFn):
    """A step whose records go to sorted runs, never to elements.

    ``outputs``: tag -> run directory; the tag ``"main"`` is the main output.
    Each output PCollection holds ``(bucket, (path, count))`` per run file:
    records themselves would cross a stage boundary, which the local runner
    buffers whole in memory.
    """

    def __init__(self, outputs: dict[str, str], num_buckets: int, spill_bytes: int) -> None:
        self._dirs = outputs
        self._num_buckets = num_buckets
        self._spill_bytes = spill_bytes

    def setup(self) -> None:
        self.inc = BeamInc()

    def start_bundle(self) -> None:
        self._spills = {tag: Spill(d, self._num_buckets, self._spill_bytes)
                        for tag, d in self._dirs.items()}
        for sp in self._spills.values():
            sp.start_bundle()
        self._pending: list = []

    def emit(self, tag: str, key: int, payload: bytes) -> None:
        for run in self._spills[tag].process((key, payload)):
            self._pending.append(run if tag == "main" else TaggedOutput(tag, run))

    def emit_edge(self, a: mh.Node, b: mh.Node) -> None:
        """An edge as adjacency records both ways, grouped by node in the next step."""
        self.emit("main", _h64(a), _esc(a) + b)
        self.emit("main", _h64(b), _esc(b) + a)

    def process(self, element):
        yield from self.handle(element)
        pending, self._pending = self._pending, []
        yield from pending

    def handle(self, element) -> Iterator:
        raise NotImplementedError

    def finish_bundle(self):
        for tag, sp in self._spills.items():
            for w in sp.finish_bundle():
                yield w if tag == "main" else TaggedOutput(tag, w)


# --- signatures and buckets ----------------------------------------------------------

class _SignatureFn(_SpillStep):
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
        node = _esc(dk.node)
        self.emit("sketch", _h64(dk.node), node + _SKETCH + dk.sketch)
        member = node + dk.sketch
        for key in dk.keys:
            self.emit("main", _h64(key), _esc(key) + member)
        return
        yield  # a generator


class _BucketEdgesFn(_SpillStep):
    """One bucket's band records -> verified edges, per band key in node order."""

    def __init__(self, cfg: NearDedupConfig, out_dir: str, num_buckets: int,
                 spill_bytes: int) -> None:
        super().__init__({"main": out_dir}, num_buckets, spill_bytes)
        self._cfg = cfg

    def handle(self, element):
        def split(p: bytes) -> tuple[bytes, bytes, bytes]:
            key_end = p.index(_END) + 2  # the escaped band key, kept as it is
            node, i = _unesc(p, key_end)
            return p[:key_end], node, p[i:]
        for _, group in itertools.groupby(map(split, _merged(element)), key=lambda t: t[0]):
            for a, b in mh.sorted_bucket_edges(((n, s) for _, n, s in group), self._cfg, self.inc):
                self.emit_edge(a, b)
        return
        yield  # a generator


# --- connected components ----------------------------------------------------------

class _StarFn(_SpillStep):
    """One bucket's adjacency records -> the edges of one large- or small-star step."""

    def __init__(self, fn: Callable[[mh.Node, Iterable[mh.Node]], list], out_dir: str,
                 num_buckets: int, spill_bytes: int) -> None:
        super().__init__({"main": out_dir}, num_buckets, spill_bytes)
        self._fn = fn

    def handle(self, element):
        for node, nbrs in _by_node(_merged(element)):
            for a, b in self._fn(node, set(nbrs)):
                self.emit_edge(a, b)
        return
        yield  # a generator


class _LabelFn(_SpillStep):
    """One bucket's final adjacency records -> ``(node, "L", label)`` records."""

    def __init__(self, out_dir: str, num_buckets: int, spill_bytes: int) -> None:
        super().__init__({"main": out_dir}, num_buckets, spill_bytes)

    def handle(self, element):
        for node, nbrs in _by_node(_merged(element)):
            label, converged = mh.star_label(node, set(nbrs))
            if not converged:
                self.inc("neardup:cc_unconverged")
            self.emit("main", _h64(node), _esc(node) + _LABEL + label)
        return
        yield  # a generator


def _grouped(runs, label: str):
    """Run files by bucket: each bucket is merged by one DoFn call."""
    return runs | label >> beam.GroupByKey()


class _ConnectedComponentRuns(beam.PTransform):
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
                runs = (_grouped(runs, f"{name}{i}ByBucket")
                        | f"{name}{i}" >> beam.ParDo(_StarFn(fn, f"{self._tmp}/cc{step}",
                                                             self._nb, self._sb)))
        return (_grouped(runs, "LabelByBucket")
                | "Label" >> beam.ParDo(_LabelFn(self._label_dir, self._nb, self._sb)))


class _SpillEdgesFn(_SpillStep):
    def __init__(self, out_dir: str, num_buckets: int, spill_bytes: int) -> None:
        super().__init__({"main": out_dir}, num_buckets, spill_bytes)

    def handle(self, edge: mh.Edge):
        self.emit_edge(*edge)
        return
        yield  # a generator


def _read_labels(element):
    for node, rests in _by_node(_merged(element)):
        for rest in rests:
            yield node, rest[len(_LABEL):]


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
        labels = runs | "CC" >> _ConnectedComponentRuns(self._rounds, self._tmp,
                                                        f"{self._tmp}/labels", self._nb, self._sb)
        return _grouped(labels, "LabelsByBucket") | "ReadLabels" >> beam.FlatMap(_read_labels)


# --- resolution -----------------------------------------------------------------------

class _RouteFn(_SpillStep):
    """Per node, its label and sketch -> the root record or a member record of its component."""

    def __init__(self, out_dir: str, num_buckets: int, spill_bytes: int) -> None:
        super().__init__({"main": out_dir}, num_buckets, spill_bytes)

    def handle(self, element):
        for node, rests in _by_node(_merged(element)):
            labels, sketch = [], None
            for rest in rests:  # "L" records sort before "S" records
                if rest[:1] == _LABEL:
                    labels.append(rest[1:])
                elif sketch is None:
                    sketch = rest[1:]
            if sketch is None:
                continue
            for label in labels:  # none for a document without near duplicates
                if label == node:
                    self.emit("main", _h64(node), _esc(node) + _ROOT + sketch)
                else:
                    self.emit("main", _h64(label), _esc(label) + _MEMBER + _esc(node) + sketch)
        return
        yield  # a generator


class _ResolveFn(beam.DoFn):
    """Per component, root first: one removal per other member, one cluster record."""

    def setup(self) -> None:
        self._inc = BeamInc()

    def process(self, element):
        for root, rests in _by_node(_merged(element)):
            root_sketch, members = None, []
            for rest in rests:
                if rest[:1] == _ROOT:
                    root_sketch = rest[1:] if root_sketch is None else root_sketch
                else:
                    node, i = _unesc(rest, 1)
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
        edges = (_grouped(signed.bands, "BandsByBucket")
                 | "BucketEdges" >> beam.ParDo(_BucketEdgesFn(cfg, f"{tmp}/cc0", nb, sb)))
        labels = edges | "CC" >> _ConnectedComponentRuns(cfg.cc_rounds, tmp, f"{tmp}/join", nb, sb)
        routed = (_grouped((signed.sketch, labels) | "JoinRuns" >> beam.Flatten(), "JoinByBucket")
                  | "Route" >> beam.ParDo(_RouteFn(f"{tmp}/resolve", nb, sb)))
        resolved = (_grouped(routed, "ComponentsByBucket")
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
