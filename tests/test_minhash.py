"""Pure near-dup pieces: comparison form, shingles, signatures, buckets, CC steps."""

from __future__ import annotations

import collections
import dataclasses
import random

import numpy as np
import pytest
from datasketch import MinHash
from datasketch.b_bit_minhash import bBitMinHash

from corpusflow.counters import CounterDict
from corpusflow.dedup import minhash as mh
from tests.neardup_eval import reference_near_dedup

TEXT = ("数学是利用符号语言研究数量、结构、变化以及空间等概念的一门学科，从某种角度看属于形式科学的一种。"
        "数学透过抽象化和逻辑推理的使用，由计数、计算、量度和对物体形状及运动的观察而产生。")


def test_comparison_form_folds_width_case_and_drops_punctuation():
    assert mh.comparison_form("ＡＢＣ，１２３。“你好”！ x_y\n") == "abc123你好xy"
    assert mh.comparison_form("，。！ \n") == ""
    assert mh.comparison_form("數學", t2s=lambda s: s.replace("數學", "数学")) == "数学"


def test_shingles_sets_and_hashes_agree():
    form = mh.comparison_form(TEXT)
    assert len(mh.shingle_hashes(form, 5)) == len(mh.shingle_set(form, 5)) == len(form) - 4
    assert mh.shingle_set("abc", 5) == {"abc"} and len(mh.shingle_hashes("abc", 5)) == 1
    assert mh.shingle_set("", 5) == set() and len(mh.shingle_hashes("", 5)) == 0
    # Hashes depend on content only (no per-process salt).
    assert mh.shingle_hashes(form, 5).tolist() == mh.shingle_hashes(form, 5).tolist()
    assert mh.shingle_hashes("abcdef", 5).dtype == np.uint32


def test_signature_matches_datasketch_and_estimates_jaccard():
    signer = mh.Signer(128, seed=1)
    h = mh.shingle_hashes(mh.comparison_form(TEXT), 5)
    ref = MinHash(num_perm=128, seed=1, hashfunc=int, scheme=mh.SCHEME)
    ref.update_batch(h.tolist())
    sig = signer.signature(h)
    assert np.array_equal(sig, ref.hashvalues)
    assert signer.minhash(sig) == ref
    assert not np.array_equal(mh.Signer(128, seed=2).signature(h), sig)
    # A chunked update equals one batch (documents longer than the chunk).
    big = np.arange(20000, dtype=np.uint32)
    one = MinHash(num_perm=128, seed=1, hashfunc=int, scheme=mh.SCHEME)
    one.update_batch(big.tolist())
    assert np.array_equal(signer.signature(big), one.hashvalues)
    # b-bit estimate vs truth on a pair with exact Jaccard 0.6, and vs datasketch.
    a, b = np.arange(0, 8000, dtype=np.uint32), np.arange(2000, 10000, dtype=np.uint32)
    ma, mb = signer.minhash_of(a), signer.minhash_of(b)
    est = mh.estimate_jaccard(mh.bbit_bytes(ma), mh.bbit_bytes(mb))
    assert abs(est - 0.6) < 0.1 and abs(est - ma.jaccard(mb)) < 0.03
    assert est == pytest.approx(bBitMinHash(ma, 8).jaccard(bBitMinHash(mb, 8)))
    assert mh.estimate_jaccard(mh.bbit_bytes(ma), mh.bbit_bytes(ma)) == 1.0
    sk = [mh.bbit_bytes(signer.minhash_of(x)) for x in (a, b, np.arange(50000, 52000))]
    sim = mh.similarity_matrix(sk)
    assert sim[0, 1] == pytest.approx(est) and sim[0, 2] < 0.05 and sim[2, 2] == 1.0


def test_config_defaults_and_validation():
    cfg = mh.NearDedupConfig()
    assert (cfg.ngram, cfg.num_perm, cfg.threshold) == (5, 128, 0.7)
    assert cfg.lsh_params() == (18, 7)
    assert mh.candidate_probability(0.8, *cfg.lsh_params()) > 0.98
    assert mh.NearDedupConfig(bands=4, rows=8).lsh_params() == (4, 8)
    for bad in ({"scope": "x"}, {"threshold": 1.0}, {"bands": 3}, {"bands": 20, "rows": 20},
                {"bucket_cap": 1}):
        with pytest.raises(ValueError):
            mh.NearDedupConfig(**bad)


def test_band_keys_are_stable_and_per_band():
    sig = mh.Signer(128, 1).signature(mh.shingle_hashes(mh.comparison_form(TEXT), 5))
    keys = mh.band_keys(sig, 18, 7)
    assert [int.from_bytes(k[:2], "big") for k in keys] == list(range(18))
    assert all(len(k) == 10 for k in keys)
    assert keys == mh.band_keys(sig.copy(), 18, 7)
    other = sig.copy()
    other[0] ^= 1  # one value changed: only band 0 moves
    assert [a == b for a, b in zip(keys, mh.band_keys(other, 18, 7))] == [False] + [True] * 17


def test_document_keys_short_empty_and_scope():
    cfg = mh.NearDedupConfig()
    signer = mh.Signer(cfg.num_perm, cfg.seed)
    c = CounterDict()
    assert mh.document_keys("a", "news", "，。！", cfg, signer, c) is None
    short = mh.document_keys("b", "news", "短文本，很短。", cfg, signer, c)
    assert short.keys == [mh.short_key("短文本很短")]
    assert int.from_bytes(short.keys[0][:2], "big", signed=True) == mh.SHORT_BAND
    full = mh.document_keys("c", "news", TEXT, cfg, signer, c)
    assert len(full.keys) == 18 and mh.node_fields(full.node) == (2, len(TEXT), "c", "news")
    assert len(full.sketch) == 128
    per = mh.document_keys("c", "news", TEXT, mh.NearDedupConfig(scope="per_source"), signer, c)
    assert per.keys == [b"\x00\x04news" + k for k in full.keys]
    assert mh.decode_member(full.member()) == (full.node, full.sketch)
    assert c.as_dict() == {"neardup:empty_docs": 1, "neardup:short_docs": 1,
                           "neardup:signatures": 2}


def test_node_order_is_kept_order():
    pri = ("wiki", "baike", "news", "text")
    nodes = [mh.make_node("n2", "news", "x" * 50, pri), mh.make_node("w9", "wiki", "x", pri),
             mh.make_node("n1", "news", "x" * 50, pri), mh.make_node("n0", "news", "x" * 10, pri),
             mh.make_node("z", "forum", "x" * 99, pri)]
    assert [mh.node_fields(n)[2] for n in sorted(nodes)] == ["w9", "n1", "n2", "n0", "z"]
    # Ids that are prefixes of others and non-ASCII ids sort as str does.
    ids = ["a", "ab", "a b", "é", "中文", "中"]
    nodes = [mh.make_node(i, "text", "xx", pri) for i in ids]
    assert [mh.node_fields(n)[2] for n in sorted(nodes)] == sorted(ids)
    # A NUL inside an id still round-trips (its order is still total and stable).
    assert mh.node_fields(mh.make_node("a\x00b", "text", "xx", pri)) == (3, 2, "a\x00b", "text")


def _sketch(lo: int, hi: int) -> bytes:
    return mh.bbit_bytes(mh.Signer(128, 1).minhash_of(np.arange(lo, hi, dtype=np.uint32)))


PRI = ("wiki", "baike", "news", "text")


def _members(pairs):
    """Encoded bucket members whose node order is the given integer."""
    return [mh.encode_member(mh.make_node(f"d{i:02d}", "news", "x", PRI), sk) for i, sk in pairs]


def _ids(edges):
    return [tuple(int(mh.node_fields(n)[2][1:]) for n in e) for e in edges]


def test_bucket_edges_verify_all_pairs_and_emit_a_forest():
    cfg = mh.NearDedupConfig(bucket_cap=4)
    a, a2, a3, b = _sketch(0, 1000), _sketch(0, 980), _sketch(10, 1000), _sketch(5000, 6000)
    c = CounterDict()
    # 1,2,3 are mutual near-dups (3 verified pairs), 4 is unrelated: 2 forest edges.
    got = mh.bucket_edges(_members([(3, a3), (4, b), (1, a), (2, a2)]), cfg, c)
    assert _ids(got) == [(1, 2), (1, 3)]
    assert c.as_dict() == {"neardup:candidate_pairs": 6, "neardup:verified_pairs": 3,
                           "neardup:edges": 2}
    assert mh.bucket_edges(_members([(1, a)]), cfg, c) == []
    assert _ids(mh.bucket_edges(_members([(2, a2), (1, a)]), cfg, c)) == [(1, 2)]
    # Without verification: a star from the smallest member.
    assert _ids(mh.bucket_edges(_members([(3, a3), (4, b), (1, a)]),
                                dataclasses.replace(cfg, verify=False),
                                CounterDict())) == [(1, 3), (1, 4)]


def test_bucket_edges_over_the_cap_is_a_verified_star():
    cfg = mh.NearDedupConfig(bucket_cap=3)
    a, b = _sketch(0, 1000), _sketch(5000, 6000)
    members = _members([(5, a), (2, a), (9, b), (1, a), (7, a)])
    c = CounterDict()
    assert _ids(mh.bucket_edges(members, cfg, c)) == [(1, 5), (1, 2), (1, 7)]
    assert c.as_dict() == {"neardup:bucket_capped": 1, "neardup:candidate_pairs": 4,
                           "neardup:verified_pairs": 3, "neardup:edges": 3}


def test_sorted_bucket_edges_equal_bucket_edges_reading_once():
    """The streaming form (members in node order, read once) gives the same edges
    and counters, under and over the cap."""
    a, a2, b = _sketch(0, 1000), _sketch(0, 980), _sketch(5000, 6000)
    for cap, spec in ((4, [(3, a2), (4, b), (1, a), (2, a2)]),
                      (3, [(5, a), (2, a2), (9, b), (1, a), (7, a), (8, a2)])):
        cfg = mh.NearDedupConfig(bucket_cap=cap)
        members = _members(spec)
        c1, c2 = CounterDict(), CounterDict()
        want = sorted(mh.bucket_edges(members, cfg, c1))
        once = iter(sorted(mh.decode_member(m) for m in members))  # an iterator: no second pass
        got = sorted(mh.sorted_bucket_edges(once, cfg, c2))
        assert want and got == want and c1.as_dict() == c2.as_dict()


def test_star_steps_on_small_graph():
    assert sorted(mh.large_star(2, [1, 3, 4])) == [(1, 3), (1, 4)]
    assert mh.large_star(1, [2, 3]) == [(1, 2), (1, 3)]
    assert sorted(mh.small_star(4, [2, 3, 5])) == [(2, 3), (2, 4)]
    assert mh.small_star(1, [2, 3]) == []
    assert mh.star_label(1, [2, 3]) == (1, True)
    assert mh.star_label(3, [1]) == (1, True)
    assert mh.star_label(3, [1, 2]) == (1, False)
    assert mh.star_label(3, [1, 4]) == (1, False)


def _simulate(edges, rounds):
    def step(es, fn):
        adj = collections.defaultdict(set)
        for a, b in es:
            adj[a].add(b)
            adj[b].add(a)
        return {e for u, n in adj.items() for e in fn(u, n)}

    for r in range(1, rounds + 1):
        edges = step(step(edges, mh.large_star), mh.small_star)
        adj = collections.defaultdict(set)
        for a, b in edges:
            adj[a].add(b)
            adj[b].add(a)
        if all(mh.star_label(u, n)[1] for u, n in adj.items()):
            return r, {u: mh.star_label(u, n)[0] for u, n in adj.items()}
    return None, None


@pytest.mark.parametrize("n,bound", [(100, 6), (1000, 8)])
def test_cc_rounds_bound_on_randomly_numbered_paths(n, bound):
    """The documented bound behind the default cc_rounds (a path is the worst shape
    near-dup chains take; real clusters are cliques/stars and need 1-2 rounds)."""
    ids = list(range(n))
    random.Random(n).shuffle(ids)
    path = {(min(a, b), max(a, b)) for a, b in zip(ids, ids[1:])}
    rounds, labels = _simulate(path, 20)
    assert rounds is not None and rounds <= bound
    assert set(labels.values()) == {0}
    assert _simulate({(0, 1), (0, 2), (1, 2), (5, 6)}, 20)[0] == 1


def test_resolve_cluster_record_and_unresolved():
    s1, s2 = _sketch(0, 100), _sketch(10, 100)
    root, m1, m2 = (mh.make_node("w", "wiki", "x" * 9, PRI), mh.make_node("n1", "news", "x" * 9, PRI),
                    mh.make_node("n2", "news", "x" * 5, PRI))
    c = CounterDict()
    rec, dropped = mh.resolve_cluster(root, s1, [(m2, s2), (m1, s1)], c)
    sim = round(mh.estimate_jaccard(s1, s2), 4)
    cid = mh.cluster_id("w")
    assert rec == {"cluster_id": cid, "kept_id": "w", "size": 3, "members": [
        {"id": "w", "source": "wiki", "similarity": 1.0},
        {"id": "n1", "source": "news", "similarity": 1.0},
        {"id": "n2", "source": "news", "similarity": sim}]}
    assert dropped == [
        ("n1", {"kept_id": "w", "cluster_id": cid, "similarity": 1.0, "reason": "near_duplicate"}),
        ("n2", {"kept_id": "w", "cluster_id": cid, "similarity": sim, "reason": "near_duplicate"})]
    assert c.as_dict() == {"neardup:clusters": 1, "neardup:removed": 2}
    c = CounterDict()
    assert mh.resolve_cluster(root, None, [(m1, s1)], c) == (None, [])
    assert c.as_dict() == {"neardup:cc_unresolved": 1}


def test_reference_on_hand_made_set():
    docs = [("w1", "wiki", TEXT), ("n1", "news", TEXT + "（责任编辑：张三）"),
            ("n2", "news", TEXT.replace("，", ",")), ("t1", "text", "完全不同的另一篇文章，" * 5)]
    c = CounterDict()
    dropped, clusters = reference_near_dedup(docs, mh.NearDedupConfig(), c)
    assert {k: v["kept_id"] for k, v in dropped.items()} == {"n1": "w1", "n2": "w1"}
    assert [m["id"] for m in clusters[0]["members"]] == ["w1", "n1", "n2"]
    assert c["neardup:signatures"] == 3 and c["neardup:short_docs"] == 1
