"""Near-duplicate detection pieces: shingles, MinHash signatures, LSH band keys,
bucket pairing, Jaccard estimates, connected-component steps and the kept-document
choice. Pure Python and numpy, no Beam: ``pipelines/near_dedup.py`` composes them.

How a document is compared (``comparison_form``): NFKC (folds full-width letters,
digits and punctuation), lower case, optional Traditional→Simplified, then every
character that is not a letter or digit (whitespace, punctuation, symbols, ``_``)
is dropped. Shingles are overlapping character n-grams of that form (no word
splitting: public tools that split on ``\\W`` turn an unspaced Chinese clause into
one token). Shingles are hashed to 32 bits with numpy in one vectorised pass and fed
to datasketch's ``MinHash`` (``affine32`` scheme, explicit seed).

Band keys come from the full signature; what travels with each band key for
verification is the b-bit (b=8) sketch of the signature (datasketch
``bBitMinHash``: num_perm bytes instead of 4*num_perm), so every bucket is verified
where it is grouped and no per-pair join is needed.

Nodes of the similarity graph are bytes that sort as ``(source rank, -length, id)``,
so ``min()`` over a component *is* the document to keep: preferred source first,
then the longest text, then the smallest id. Decisions never depend on arrival
order. (Bytes, not tuples: edges are shuffled once per connected-component step and
a bytes node is a third of the memory and coder work.)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import re
import struct
import unicodedata
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
from datasketch import MinHash, MinHashLSH
from datasketch.b_bit_minhash import bBitMinHash

from corpusflow.counters import Inc, register
from corpusflow.document import SOURCES, stable_hash64

COUNTERS = register([
    "neardup:signatures",        # documents that got a signature and band keys
    "neardup:short_docs",        # fewer shingles than min_shingles: exact-form key only
    "neardup:empty_docs",        # nothing left after dropping punctuation/space: skipped
    "neardup:bucket_capped",     # buckets over bucket_cap verified as a star, not all pairs
    "neardup:candidate_pairs",   # pairs compared in buckets (once per shared bucket)
    "neardup:verified_pairs",    # compared pairs with estimated Jaccard >= threshold
    "neardup:edges",             # graph edges emitted (a spanning forest per bucket)
    "neardup:cc_unconverged",    # nodes not yet in star form after the last CC round
    "neardup:cc_unresolved",     # documents kept because their component did not converge
    "neardup:removed",           # documents removed as near duplicates
    "neardup:clusters",          # clusters of size >= 2
])

# Node of the similarity graph: rank byte, big-endian (2^64-1 - len(text)), the id
# in UTF-8, NUL, the source. Byte order = kept-document order (UTF-8 preserves code
# point order; the NUL sorts a prefix id first, as str comparison does).
Node = bytes
Edge = tuple[Node, Node]
_NODE_HEAD = struct.Struct(">BQ")
_MAX_LEN = (1 << 64) - 1

# Exact-form keys of short documents use this band index (real bands are >= 0).
SHORT_BAND = -1

# The MinHash scheme: datasketch 2.0's default, a collision-free bijective permutation
# over 32-bit values (the legacy scheme inflates estimates on large sets).
SCHEME = "affine32"

# Bits kept per signature value for verification (b-bit MinHash, Li & Koenig 2010).
# A chance match costs 2^-8; the estimator removes it, and its standard error at
# num_perm=128 is within 1% of the full 32-bit one.
BITS = 8

# Shingle hashes are computed in chunks this big when feeding MinHash.update_batch,
# which materialises a (chunk x num_perm) matrix: 8192 x 128 x 4 B = 4 MB.
_CHUNK = 8192

_NOT_WORD = re.compile(r"[\W_]+")


@dataclasses.dataclass(frozen=True)
class NearDedupConfig:
    """Options of the near-dup stage.

    ``threshold`` is used twice: datasketch picks bands x rows for it, and candidate
    pairs are kept only if their sketch-estimated Jaccard reaches it.

    Defaults, from ``python -m tests.neardup_eval --sweep`` (783 distinct real
    documents + 2,349 web-style copies; recall on copies with true Jaccard >= 0.8):
    n=3..9 all give recall >= 0.997 and precision 1.0; larger n makes copies look
    less alike (share of copies at J >= 0.8: 0.79 at n=3, 0.75 at n=9), smaller n
    makes unrelated documents look more alike, so 5. 64 permutations: recall 0.995
    and a noisier check (std 0.057 at J=0.7); 256: 1.0 at 1.4x the signature cost;
    128. Threshold 0.8 misses copies at the J=0.8 edge (recall 0.954); 0.6 compares
    50% more pairs; 0.7. Weights (0.2, 0.8) give 18x7 bands (P(candidate | J=0.8) =
    0.986); the even (0.5, 0.5) gives 14x9 (0.867; recall 0.988).
    """

    ngram: int = 5
    num_perm: int = 128
    threshold: float = 0.7
    # (false positive, false negative) weights for datasketch's band/row optimiser;
    # false positives only cost a sketch comparison, so recall weighs more.
    weights: tuple[float, float] = (0.2, 0.8)
    bands: Optional[int] = None  # override; both or neither of bands/rows
    rows: Optional[int] = None
    seed: int = 1
    verify: bool = True
    # Below 20 shingles one changed character alters up to a quarter of the set:
    # "near" means little there; such documents only meet exact (normalised) copies.
    min_shingles: int = 20
    # All-pairs verification up to 50 members (a 50x50x128 byte comparison).
    bucket_cap: int = 50
    # A randomly numbered 100-node path converges in 6 rounds (tests); clusters
    # of near-copies (cliques, stars) need 1-2.
    cc_rounds: int = 6
    scope: str = "global"  # or "per_source"
    source_priority: tuple[str, ...] = SOURCES
    t2s: bool = False  # the clean stage already converts T->S by default

    def __post_init__(self) -> None:
        if self.scope not in ("global", "per_source"):
            raise ValueError(f"scope must be 'global' or 'per_source', got {self.scope!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither")
        if self.ngram < 1 or self.num_perm < 1 or self.bucket_cap < 2 or self.cc_rounds < 1:
            raise ValueError("ngram, num_perm, cc_rounds must be >= 1 and bucket_cap >= 2")
        b, r = self.lsh_params()
        if b * r > self.num_perm:
            raise ValueError(f"bands*rows={b * r} exceeds num_perm={self.num_perm}")

    def lsh_params(self) -> tuple[int, int]:
        """(bands, rows): the override, or datasketch's optimum for the threshold."""
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        return _lsh_params(self.threshold, self.num_perm, tuple(self.weights))


@functools.lru_cache(maxsize=None)
def _lsh_params(threshold: float, num_perm: int, weights: tuple[float, float]) -> tuple[int, int]:
    # MinHashLSH's constructor runs datasketch's false-positive/false-negative
    # integral optimiser; the (empty, in-memory) index itself is thrown away.
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return lsh.b, lsh.r


def candidate_probability(j: float, bands: int, rows: int) -> float:
    """P(a pair with Jaccard ``j`` shares at least one bucket) = 1-(1-j^r)^b."""
    return 1.0 - (1.0 - j ** rows) ** bands


# --- text -> shingles -> signature -------------------------------------------------

def comparison_form(text: str, t2s: Optional[Callable[[str], str]] = None) -> str:
    """The text as compared: NFKC, lower case, optional T->S, letters/digits only."""
    # Dropping punctuation first leaves mostly NFKC-normal text (full-width Chinese
    # punctuation is what usually is not), so the quick check skips NFKC for most
    # documents: 3x faster on real text than normalising everything.
    s = _NOT_WORD.sub("", text).lower()
    if not unicodedata.is_normalized("NFKC", s):
        s = _NOT_WORD.sub("", unicodedata.normalize("NFKC", s).lower())
    if t2s is not None:
        s = _NOT_WORD.sub("", t2s(s))
    return s


def shingle_set(form: str, n: int) -> set[str]:
    """Exact character n-gram set of a comparison form (for measuring true Jaccard).

    A non-empty form shorter than ``n`` is one shingle, itself.
    """
    if len(form) <= n:
        return {form} if form else set()
    return {form[i:i + n] for i in range(len(form) - n + 1)}


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


# Odd 64-bit constants (golden ratio; splitmix64's mixer) for the rolling hash.
_P = np.uint64(0x9E3779B97F4A7C15)
_M = np.uint64(0xBF58476D1CE4E5B9)


def rolling_hashes64(form: str, n: int) -> np.ndarray:
    """Mixed 64-bit hashes of the form's character n-grams, one per start position
    (one hash of the whole form if it is shorter than ``n``; empty for "").

    Vectorised: a polynomial over code points (uint64, wrapping) and a final mix.
    """
    if not form:
        return np.empty(0, dtype=np.uint64)
    cps = np.frombuffer(form.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    m = max(len(cps) - n + 1, 1)
    h = np.zeros(m, dtype=np.uint64)
    for k in range(min(n, len(cps))):
        h = h * _P + cps[k:k + m] + np.uint64(1)
    h ^= h >> np.uint64(31)
    h *= _M
    h ^= h >> np.uint64(32)
    return h


def shingle_hashes(form: str, n: int) -> np.ndarray:
    """Sorted unique 32-bit hashes of the form's character n-grams (same convention
    as ``shingle_set``). Two different shingles collide with probability ~2^-32,
    noise next to MinHash's own estimation error.
    """
    h = np.sort((rolling_hashes64(form, n) & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    # Sort + neighbour mask: 10x faster than np.unique's hash path on small arrays.
    return h[np.concatenate(([True], h[1:] != h[:-1]))] if len(h) else h


class Signer:
    """Computes MinHash signatures; build one per worker (permutations are shared)."""

    def __init__(self, num_perm: int, seed: int) -> None:
        # hashfunc=int: inputs are already 32-bit shingle hashes; datasketch's
        # affine32 scheme pre-mixes them with the MurmurHash3 finaliser anyway.
        self._proto = MinHash(num_perm=num_perm, seed=seed, hashfunc=int, scheme=SCHEME)

    def signature(self, hashes: np.ndarray) -> np.ndarray:
        """uint32 signature of ``num_perm`` values (all 2^32-1 for no shingles)."""
        return self.minhash_of(hashes).hashvalues

    def minhash_of(self, hashes: np.ndarray) -> MinHash:
        m = self._proto.copy()
        for i in range(0, len(hashes), _CHUNK):
            m.update_batch(hashes[i:i + _CHUNK].tolist())
        return m

    def sketch(self, hashes: np.ndarray) -> tuple[np.ndarray, bytes]:
        """(full signature, its b-bit sketch as ``num_perm`` bytes)."""
        m = self.minhash_of(hashes)
        return m.hashvalues, bbit_bytes(m)

    def minhash(self, signature: np.ndarray) -> MinHash:
        """Wrap a stored signature back into a datasketch MinHash."""
        return MinHash(seed=self._proto.seed, hashfunc=int, scheme=SCHEME,
                       hashvalues=signature, permutations=self._proto.permutations)


# Bucket keys and bucket members are flat bytes: the band-key GroupByKey is the
# stage's biggest shuffle (bands x documents), and one bytes object per element is
# about half the memory and coder work of nested tuples.
_BAND = struct.Struct(">h")


def _h8(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


def band_keys(signature: np.ndarray, bands: int, rows: int) -> list[bytes]:
    """Band index (2 bytes) + 64-bit hash of the band's values, for each band."""
    sig = np.ascontiguousarray(signature, dtype="<u4")
    return [_BAND.pack(i) + _h8(sig[i * rows:(i + 1) * rows].tobytes()) for i in range(bands)]


def short_key(form: str) -> bytes:
    """The single key of a short document: its whole comparison form, hashed.

    Short documents still meet their exact (normalised) copies, but never share a
    bucket just because their signatures are degenerate.
    """
    return _BAND.pack(SHORT_BAND) + _h8(form.encode("utf-8"))


def scoped_key(source: str, key: bytes) -> bytes:
    """A key that only documents of ``source`` share (``scope="per_source"``)."""
    src = source.encode("utf-8")
    return struct.pack(">H", len(src)) + src + key


_LEN16 = struct.Struct(">H")


def encode_member(node: Node, sketch: bytes) -> bytes:
    """A bucket member as bytes: node length, node, sketch."""
    return _LEN16.pack(len(node)) + node + sketch


def decode_member(data: bytes) -> tuple[Node, bytes]:
    """Inverse of ``encode_member``."""
    (n,) = _LEN16.unpack_from(data)
    return data[2:2 + n], data[2 + n:]


def bbit_bytes(m: MinHash) -> bytes:
    """The b-bit sketch of a MinHash (datasketch ``bBitMinHash``), one byte a value."""
    return bBitMinHash(m, b=BITS).hashvalues.astype(np.uint8).tobytes()


# Chance that two b-bit values match although the full values differ.
_CHANCE = 1.0 / (1 << BITS)


def _correct(raw: np.ndarray | float) -> np.ndarray | float:
    # bBitMinHash.jaccard with r=0 (sets far smaller than 2^32): (raw - C) / (1 - C).
    return np.clip((raw - _CHANCE) / (1.0 - _CHANCE), 0.0, 1.0)


def estimate_jaccard(a: bytes, b: bytes) -> float:
    """Jaccard estimate from two b-bit sketches (``bBitMinHash.jaccard``, clipped to [0, 1])."""
    x, y = np.frombuffer(a, dtype=np.uint8), np.frombuffer(b, dtype=np.uint8)
    return float(_correct(np.count_nonzero(x == y) / len(x)))


def similarity_matrix(sketches: Sequence[bytes]) -> np.ndarray:
    """All-pairs Jaccard estimates of k sketches at once (k x k)."""
    m = np.frombuffer(b"".join(sketches), dtype=np.uint8).reshape(len(sketches), -1)
    raw = (m[:, None, :] == m[None, :, :]).mean(axis=2)
    return _correct(raw)


def source_rank(source: str, priority: Sequence[str]) -> int:
    """Position of a source in the priority list; unknown sources come last."""
    try:
        return list(priority).index(source)
    except ValueError:
        return len(priority)


def make_node(doc_id: str, source: str, text: str, priority: Sequence[str]) -> Node:
    """The graph node; its byte order is the kept-document order."""
    head = _NODE_HEAD.pack(min(source_rank(source, priority), 255), _MAX_LEN - len(text))
    return head + doc_id.encode("utf-8") + b"\x00" + source.encode("utf-8")


def node_fields(node: Node) -> tuple[int, int, str, str]:
    """(source rank, text length, doc id, source) of a node."""
    rank, inv = _NODE_HEAD.unpack_from(node)
    doc_id, source = node[_NODE_HEAD.size:].rsplit(b"\x00", 1)
    return rank, _MAX_LEN - inv, doc_id.decode("utf-8"), source.decode("utf-8")


@dataclasses.dataclass
class DocKeys:
    """What one document contributes: its node, b-bit sketch and bucket keys."""

    node: Node
    sketch: bytes
    keys: list[bytes]

    def member(self) -> bytes:
        """The value this document puts in each of its buckets."""
        return encode_member(self.node, self.sketch)


def document_keys(doc_id: str, source: str, text: str, cfg: NearDedupConfig,
                  signer: Signer, inc: Inc,
                  t2s: Optional[Callable[[str], str]] = None) -> Optional[DocKeys]:
    """Signature and bucket keys of one document, or None if it has no content.

    With ``scope="per_source"`` every key starts with the source, so buckets never
    mix sources.
    """
    form = comparison_form(text, t2s)
    if not form:
        inc("neardup:empty_docs")
        return None
    hashes = shingle_hashes(form, cfg.ngram)
    node = make_node(doc_id, source, text, cfg.source_priority)
    sig, sketch = signer.sketch(hashes)
    if len(hashes) < cfg.min_shingles:
        inc("neardup:short_docs")
        keys = [short_key(form)]
    else:
        inc("neardup:signatures")
        keys = band_keys(sig, *cfg.lsh_params())
    if cfg.scope == "per_source":
        keys = [scoped_key(source, k) for k in keys]
    return DocKeys(node, sketch, keys)


# --- buckets -> verified edges ------------------------------------------------------

def bucket_edges(members: Iterable[bytes], cfg: NearDedupConfig, inc: Inc) -> list[Edge]:
    """Verified edges ``(a, b)``, ``a < b``, of one bucket of encoded members.

    Up to ``bucket_cap`` members: every pair is verified (one numpy comparison) and
    a spanning forest of the verified pairs is returned, at most k-1 edges, which
    is all connected components need. Over the cap: each member is verified against
    the smallest member only (a star, O(k)); ``members`` is then iterated twice and
    never held in memory.
    """
    it = iter(members)
    head = list(itertools.islice(it, cfg.bucket_cap + 1))
    if len(head) <= cfg.bucket_cap:
        return _all_pairs_edges(sorted(decode_member(m) for m in head), cfg, inc)
    hub, hub_sketch = min(decode_member(m) for m in members)
    return list(_star_edges(hub, hub_sketch, map(decode_member, members), cfg, inc))


def sorted_bucket_edges(members: Iterable[tuple[Node, bytes]], cfg: NearDedupConfig,
                        inc: Inc) -> Iterator[Edge]:
    """``bucket_edges`` of ``(node, sketch)`` members that arrive sorted, read once.

    The first member is the smallest, so a bucket over the cap is verified as a
    star from it while streaming: at most ``bucket_cap + 1`` members are held and
    its edges are yielded as they are found. Same edges and counters as
    ``bucket_edges`` on the same members (counters once the edges are consumed).
    """
    it = iter(members)
    head = list(itertools.islice(it, cfg.bucket_cap + 1))
    if len(head) <= cfg.bucket_cap:
        return iter(_all_pairs_edges(head, cfg, inc))
    hub, hub_sketch = head[0]
    return _star_edges(hub, hub_sketch, itertools.chain(head, it), cfg, inc)


def _all_pairs_edges(head: list[tuple[Node, bytes]], cfg: NearDedupConfig, inc: Inc) -> list[Edge]:
    """A spanning forest of the verified pairs of up to ``bucket_cap`` sorted members."""
    k = len(head)
    if k < 2:
        return []
    inc("neardup:candidate_pairs", k * (k - 1) // 2)
    if k == 2:  # the common case: skip the matrix machinery
        ok2 = not cfg.verify or estimate_jaccard(head[0][1], head[1][1]) >= cfg.threshold
        inc("neardup:verified_pairs", int(ok2))
        inc("neardup:edges", int(ok2))
        return [(head[0][0], head[1][0])] if ok2 else []
    if cfg.verify:
        ok = similarity_matrix([m[1] for m in head]) >= cfg.threshold
    else:
        ok = np.ones((k, k), dtype=bool)
    ok = np.triu(ok, 1)
    inc("neardup:verified_pairs", int(ok.sum()))
    # Kruskal in node order over <= bucket_cap members: a deterministic forest.
    root = list(range(k))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    edges = []
    for i, j in zip(*np.nonzero(ok)):
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            root[max(ri, rj)] = min(ri, rj)
            edges.append((head[i][0], head[j][0]))
    inc("neardup:edges", len(edges))
    return edges


def _star_edges(hub: Node, hub_sketch: bytes, members: Iterable[tuple[Node, bytes]],
                cfg: NearDedupConfig, inc: Inc) -> Iterator[Edge]:
    """A bucket over the cap: every member verified against the smallest, ``hub``."""
    inc("neardup:bucket_capped")
    compared = found = 0
    for node, sketch in members:
        if node == hub:
            continue
        compared += 1
        if not cfg.verify or estimate_jaccard(hub_sketch, sketch) >= cfg.threshold:
            found += 1
            yield hub, node
    inc("neardup:candidate_pairs", compared)
    inc("neardup:verified_pairs", found)
    inc("neardup:edges", found)


# --- connected components: alternating large-star / small-star ----------------------
# Kiveris et al., "Connected Components in MapReduce and Beyond" (SoCC 2014): each
# step is one group-by-node; after O(log^2 n) rounds (a handful in practice, see
# tests) every component is a star around its minimum node. Edges are (a, b), a < b.

def large_star(u: Node, neighbours: Iterable[Node]) -> list[Edge]:
    """Connect every larger neighbour of ``u`` to the minimum of u's neighbourhood."""
    nbrs = set(neighbours)
    m = min(nbrs | {u})
    return [(m, v) for v in nbrs if v > u]


def small_star(u: Node, neighbours: Iterable[Node]) -> list[Edge]:
    """Connect ``u`` and its smaller neighbours to the minimum of those."""
    smaller = {v for v in neighbours if v < u}
    if not smaller:
        return []
    m = min(smaller)
    return [(m, u)] + [(m, v) for v in smaller if v != m]


def star_label(u: Node, neighbours: Iterable[Node]) -> tuple[Node, bool]:
    """(label, converged) of ``u`` from the final edges.

    Converged means u is a centre (only larger neighbours) or a leaf (exactly one
    smaller neighbour, no larger one): if every node is, the graph is a star forest.
    """
    nbrs = set(neighbours)
    smaller = [v for v in nbrs if v < u]
    if not smaller:
        return u, True
    return min(smaller), len(smaller) == 1 and len(smaller) == len(nbrs)


# --- clusters -------------------------------------------------------------------------

def cluster_id(kept_id: str) -> str:
    """Stable cluster id derived from the kept document's id."""
    return f"nd-{stable_hash64(kept_id):016x}"


def resolve_cluster(root: Node, root_sketch: Optional[bytes],
                    members: Iterable[tuple[Node, bytes]],
                    inc: Inc) -> tuple[Optional[dict], list[tuple[str, dict]]]:
    """The cluster record and the removals of one component.

    ``root_sketch`` is None when ``root`` was itself labelled into another component
    (CC did not converge): then nobody is removed here, so a removed document's
    ``kept_id`` always names a kept document.
    """
    if root_sketch is None:
        n = sum(1 for _ in members)
        inc("neardup:cc_unresolved", n)
        return None, []
    _, _, kept_id, kept_source = node_fields(root)
    cid = cluster_id(kept_id)
    rows = [(node_fields(m), sim) for m, sim in
            sorted((m, round(estimate_jaccard(root_sketch, s), 4)) for m, s in members)]
    if not rows:
        return None, []
    dropped = [(m[2], {"kept_id": kept_id, "cluster_id": cid, "similarity": sim,
                       "reason": "near_duplicate"}) for m, sim in rows]
    inc("neardup:removed", len(dropped))
    inc("neardup:clusters")
    record = {
        "cluster_id": cid,
        "kept_id": kept_id,
        "members": [{"id": kept_id, "source": kept_source, "similarity": 1.0}]
                   + [{"id": m[2], "source": m[3], "similarity": sim} for m, sim in rows],
        "size": len(rows) + 1,
    }
    return record, dropped
