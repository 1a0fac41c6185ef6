"""Packing and pair tasks: SOP, NSP, none; BERT truncation."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from corpusflow.counters import CounterDict
from corpusflow.pretrain.pairs import (Pair, make_pairs, trim_units, truncate_pair,
                                       truncation_counts)


def make_doc(rng: random.Random, base: int, n_sent: int, lo: int = 3, hi: int = 30):
    """Sentences whose token ids are consecutive integers from ``base``, so any
    piece of text is recognisable by its ids (order = document order)."""
    doc = []
    nxt = base
    for _ in range(n_sent):
        n = rng.randint(lo, hi)
        units = []
        left = n
        while left:
            u = min(left, rng.choice([1, 1, 2, 2, 3]))
            units.append(u)
            left -= u
        doc.append((list(range(nxt, nxt + n)), units))
        nxt += n
    return doc


def is_run(ids):
    return all(b == a + 1 for a, b in zip(ids, ids[1:]))


def check_units(p: Pair):
    assert sum(p.a_units) == len(p.a_ids) and all(u > 0 for u in p.a_units)
    if p.b_ids is not None:
        assert sum(p.b_units) == len(p.b_ids) and all(u > 0 for u in p.b_units)


def test_truncation_counts_match_bert_loop():
    def bert(na, nb, m):
        ra = rb = 0
        while na + nb > m:
            if na > nb:
                na, ra = na - 1, ra + 1
            else:
                nb, rb = nb - 1, rb + 1
        return ra, rb
    for na in range(0, 30):
        for nb in range(0, 30):
            for m in range(2, 50):
                assert truncation_counts(na, nb, m) == bert(na, nb, m)


def test_trim_units_matches_token_level():
    rng = random.Random(0)
    for _ in range(5000):
        units = [rng.randint(1, 4) for _ in range(rng.randint(1, 10))]
        n = sum(units)
        front = rng.randint(0, n - 1)
        back = rng.randint(0, n - 1 - front)
        owner = [k for k, u in enumerate(units) for _ in range(u)][front:n - back]
        assert trim_units(units, front, back) == [owner.count(k) for k in sorted(set(owner))]


def test_truncate_pair_front_back_is_fair():
    rng = random.Random(1)
    front = total = 0
    for _ in range(2000):
        a = list(range(100))
        a2, au2, b2, bu2, cut = truncate_pair(a, [1] * 100, [7, 8], [2], 60, rng)
        assert cut and len(a2) == 58 and b2 == [7, 8] and bu2 == [2] and sum(au2) == 58
        front += a2[0]
        total += 42
    assert abs(front / total - 0.5) < 0.02


def test_sop_order_single_segments_and_rate():
    """SOP: in-order pairs read A then B in document order, swapped pairs read
    B then A (re-swapping restores order); 50% ± 1% swapped; one-sentence
    chunks become single segments, never random-document negatives."""
    rng = random.Random(2)
    inc = CounterDict()
    labels = Counter()
    max_seq = 20
    for d in range(11_000):
        doc = make_doc(rng, d * 10_000, 1 if d % 10 == 0 else rng.randint(2, 20), lo=2, hi=6)
        pairs = make_pairs(doc, max_seq_length=max_seq, short_seq_prob=0.1, pair_task="sop",
                           rng=random.Random(d), inc=inc)
        for p in pairs:
            check_units(p)
            ids_a = p.a_ids
            assert all(d * 10_000 <= i < (d + 1) * 10_000 for i in ids_a)   # never another doc
            if p.b_ids is None:
                assert p.label == 0 and len(ids_a) <= max_seq - 2
                continue
            labels[p.label] += 1
            assert len(ids_a) + len(p.b_ids) <= max_seq - 3 and ids_a and p.b_ids
            first, second = (ids_a, p.b_ids) if p.label == 0 else (p.b_ids, ids_a)
            assert is_run(first) and is_run(second) and first[-1] < second[0]
    n = labels[0] + labels[1]
    assert n > 20_000
    assert abs(labels[1] / n - 0.5) < 0.01
    got = inc.as_dict()
    assert got["pairs:sop:swapped"] == labels[1] and got["pairs:sop:in_order"] == labels[0]
    assert got["pairs:single_segment"] > 0
    assert not any(k.startswith("pairs:nsp") for k in got)


def test_sop_untruncated_pairs_are_adjacent_sentences():
    rng = random.Random(3)
    for d in range(300):
        doc = make_doc(rng, 0, 6, lo=2, hi=5)       # short sentences: rarely truncated
        for p in make_pairs(doc, max_seq_length=40, short_seq_prob=0.0, pair_task="sop",
                            rng=random.Random(d)):
            if p.b_ids is None:
                continue
            first, second = (p.a_ids, p.b_ids) if p.label == 0 else (p.b_ids, p.a_ids)
            joined = first + second
            if len(joined) < 37:                      # not truncated
                assert is_run(joined)
                starts = {s[0][0] for s in doc}
                assert first[0] in starts and second[0] in starts


def test_nsp_rate_and_sources():
    rng = random.Random(4)
    others = [make_doc(rng, 10**9 + k * 10_000, 8) for k in range(20)]

    def random_doc(r: random.Random):
        return others[int(r.random() * len(others))]

    inc = CounterDict()
    labels = Counter()
    for d in range(11_000):
        doc = make_doc(rng, d * 1000, rng.randint(2, 20), lo=2, hi=6)
        for p in make_pairs(doc, max_seq_length=20, short_seq_prob=0.1, pair_task="nsp",
                            rng=random.Random(d), random_doc=random_doc, inc=inc):
            check_units(p)
            assert all(i < 10**9 for i in p.a_ids) and is_run(p.a_ids)
            if p.b_ids is None:
                assert p.label == 0
                labels["single"] += 1
                continue
            labels[p.label] += 1
            from_other = all(i >= 10**9 for i in p.b_ids)
            assert from_other == (p.label == 1)
            if p.label == 0:
                assert p.a_ids[-1] < p.b_ids[0]
    n = labels[0] + labels[1] + labels["single"]
    assert abs(labels[1] / n - 0.5) < 0.01
    got = inc.as_dict()
    assert got["pairs:nsp:random_next"] == labels[1]
    assert got["pairs:nsp:actual_next"] == labels[0]
    assert got["pairs:single_segment"] == labels["single"]


class ScriptedRandom(random.Random):
    """random() replays a script (then 0.99); getrandbits as usual."""

    def __init__(self, script):
        super().__init__(0)
        self.script = list(script)

    def random(self):
        return self.script.pop(0) if self.script else 0.99


def test_nsp_puts_unused_sentences_back_and_handles_no_negative():
    doc = [([1, 2], [2]), ([3, 4], [2]), ([5, 6], [2]), ([7, 8], [2])]
    other = [([100, 101], [1, 1])]
    # target draw (no short), a_end draw (0.0 -> 1), coin 0.1 -> random next,
    # random_doc start (0.0); then the put-back sentences form a new chunk.
    rng = ScriptedRandom([0.5, 0.0, 0.1, 0.0])
    pairs = make_pairs(doc, max_seq_length=200, short_seq_prob=0.1, pair_task="nsp",
                       rng=rng, random_doc=lambda r: other)
    assert (pairs[0].a_ids, pairs[0].b_ids, pairs[0].label) == ([1, 2], [100, 101], 1)
    # Sentences 2-4 were put back: the next chunk starts with [3, 4].
    assert pairs[1].a_ids[:2] == [3, 4] and pairs[1].label == 0
    inc = CounterDict()
    pairs = make_pairs(doc, max_seq_length=200, short_seq_prob=0.1, pair_task="nsp",
                       rng=ScriptedRandom([0.5, 0.0, 0.1]), random_doc=lambda r: None, inc=inc)
    assert len(pairs) == 1 and pairs[0].label == 0 and pairs[0].b_ids == [3, 4, 5, 6, 7, 8]
    assert inc.as_dict() == {"pairs:nsp:no_negative": 1, "pairs:nsp:actual_next": 1}
    # Plain id lists from random_doc are accepted (each token its own unit).
    pairs = make_pairs(doc, max_seq_length=200, short_seq_prob=0.1, pair_task="nsp",
                       rng=ScriptedRandom([0.5, 0.0, 0.1, 0.0]), random_doc=lambda r: [[100, 101]])
    assert pairs[0].b_ids == [100, 101] and pairs[0].b_units == [1, 1]


def test_none_task_packs_single_segments_in_order():
    rng = random.Random(5)
    for d in range(200):
        doc = make_doc(rng, 0, rng.randint(1, 15), hi=20)
        pairs = make_pairs(doc, max_seq_length=48, short_seq_prob=0.0, pair_task="none",
                           rng=random.Random(d))
        assert all(p.b_ids is None and p.label == 0 and len(p.a_ids) <= 46 for p in pairs)
        for p in pairs:
            check_units(p)
            assert is_run(p.a_ids)


def test_short_seq_prob_makes_short_chunks():
    def mean_len(prob: float) -> float:
        rng = random.Random(6)
        lengths = []
        for d in range(300):
            doc = make_doc(rng, 0, 60, lo=1, hi=3)
            pairs = make_pairs(doc, max_seq_length=40, short_seq_prob=prob, pair_task="sop",
                               rng=random.Random(d))
            lengths += [len(p.a_ids) + len(p.b_ids or []) for p in pairs[:-1]]
        return sum(lengths) / len(lengths)
    assert mean_len(0.0) == 37.0            # every chunk but the last is full
    assert mean_len(1.0) < 25               # targets uniform in [2, 37]


def test_unknown_task():
    with pytest.raises(ValueError):
        make_pairs([], max_seq_length=16, short_seq_prob=0, pair_task="xyz", rng=random.Random(0))


def test_single_segment_is_truncated_to_fit():
    inc = CounterDict()
    doc = [(list(range(100)), [1] * 100)]
    (p,) = make_pairs(doc, max_seq_length=20, short_seq_prob=0.0, pair_task="sop",
                      rng=random.Random(0), inc=inc)
    assert p.b_ids is None and len(p.a_ids) == 18 and is_run(p.a_ids) and p.a_units == [1] * 18
    assert inc.as_dict() == {"pairs:single_segment": 1, "pairs:truncated": 1}
