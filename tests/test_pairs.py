"""Packing and pair tasks: SOP, NSP, none; BERT truncation."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from corpusflow.counters import CounterDict
from corpusflow.pretrain.pairs import (MIN_MID_SPLIT_TOKENS, Pair, clause_cuts, make_pairs,
                                       mid_cut, trim_units, truncate_pair, truncation_counts)


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


CLAUSE = 7_000_001           # a clause mark id (like ，) for make_doc_with_clauses
PUNCT = frozenset({CLAUSE, 7_000_002})


def make_doc_with_clauses(rng: random.Random, base: int, n_sent: int, lo: int = 2, hi: int = 12):
    """make_doc, but about half of the sentences have a one-token clause mark
    unit (``CLAUSE``) somewhere inside; the ids around it stay consecutive."""
    doc = []
    for ids, units in make_doc(rng, base, n_sent, lo, hi):
        if len(units) >= 2 and rng.random() < 0.5:
            k = rng.randint(1, len(units) - 1)
            at = sum(units[:k])
            ids = ids[:at] + [CLAUSE] + ids[at:]
            units = units[:k] + [1] + units[k:]
        doc.append((ids, units))
    return doc


def content(ids):
    return [i for i in ids if i not in PUNCT]


def test_sop_every_instance_is_a_pair_and_labels_are_balanced():
    """SOP over 11k documents (one in ten has a single sentence, the rest 2-20
    short sentences, some with clause marks): every instance has two
    non-empty segments, from one document, in document order once un-swapped;
    no word is ever cut (units sum up); swapped share 50% ± 1% over ALL
    instances; the one-sentence handling counters add up."""
    rng = random.Random(2)
    inc = CounterDict()
    labels = Counter()
    max_seq = 20
    for d in range(11_000):
        n_sent = 1 if d % 10 == 0 else rng.randint(2, 20)
        doc = make_doc_with_clauses(rng, d * 10_000, n_sent, lo=2, hi=12)
        pairs = make_pairs(doc, max_seq_length=max_seq, short_seq_prob=0.1, pair_task="sop",
                           rng=random.Random(d), inc=inc, clause_ids=frozenset({CLAUSE}),
                           punct_ids=PUNCT)
        for p in pairs:
            check_units(p)
            assert p.b_ids is not None and content(p.a_ids) and content(p.b_ids)
            assert all(d * 10_000 <= i < (d + 1) * 10_000 for i in content(p.a_ids + p.b_ids))
            labels[p.label] += 1
            assert len(p.a_ids) + len(p.b_ids) <= max_seq - 3
            first, second = (p.a_ids, p.b_ids) if p.label == 0 else (p.b_ids, p.a_ids)
            assert is_run(content(first)) and is_run(content(second))
            assert content(first)[-1] < content(second)[0]
    n = labels[0] + labels[1]
    assert n > 20_000
    assert abs(labels[1] / n - 0.5) < 0.01
    got = inc.as_dict()
    assert got["pairs:sop:swapped"] == labels[1] and got["pairs:sop:in_order"] == labels[0]
    for k in ("pairs:single_split_clause", "pairs:single_split_mid", "pairs:single_merged",
              "pairs:single_dropped"):
        assert got[k] > 0, k
    assert not any(k.startswith("pairs:nsp") for k in got)


def sents(*spec):
    """Sentences from (first id, unit lengths); ids are consecutive from it."""
    return [(list(range(start, start + sum(units))), list(units)) for start, units in spec]


def test_one_sentence_chunk_cut_at_a_clause_mark():
    # 10 11 | ， | 13 14 15 | ， | 17 18: two marks, one drawn by the pass RNG.
    s = (list(range(10, 19)), [2, 1, 3, 1, 2])
    clause = frozenset({12, 16})
    seen = set()
    for seed in range(40):
        inc = CounterDict()
        (p,) = make_pairs([s], max_seq_length=64, short_seq_prob=0.0, pair_task="sop",
                          rng=random.Random(seed), inc=inc, clause_ids=clause, punct_ids=clause)
        first, second = (p.a_ids, p.b_ids) if p.label == 0 else (p.b_ids, p.a_ids)
        first_u, second_u = (p.a_units, p.b_units) if p.label == 0 else (p.b_units, p.a_units)
        assert first + second == s[0] and first[-1] in clause
        assert first_u + second_u == s[1]                 # cut between words
        seen.add(len(first))
        assert inc.as_dict() == {"pairs:single_split_clause": 1,
                                 "pairs:sop:swapped" if p.label else "pairs:sop:in_order": 1}
    assert seen == {3, 7}
    # A mark with only punctuation after it is not a cut (", ”" would be B).
    s2 = (list(range(10, 15)), [2, 1, 1, 1])             # 10 11 ， 13(”) 14(。)
    assert clause_cuts(s2, frozenset({12}), frozenset({12, 13, 14})) == []
    assert clause_cuts(s2, frozenset({12}), frozenset({12})) == [3]
    # A mark inside a unit is not a cut: words are never cut.
    assert clause_cuts((list(range(10, 15)), [4, 1]), frozenset({12}), frozenset()) == []


def test_one_sentence_chunk_mid_cut_and_drop():
    # 10 tokens, no clause mark, alone: cut at the word boundary nearest 5.
    s = (list(range(10)), [3, 3, 4])
    assert mid_cut(s) == 6                       # |2*6 - 10| = 2 < |2*3 - 10| = 4
    assert mid_cut((list(range(10)), [2, 3, 5])) == 5
    assert mid_cut((list(range(8)), [2, 2, 2, 2])) == 4
    assert mid_cut((list(range(8)), [1, 6, 1])) == 1    # tie 1 vs 7: the earlier
    assert mid_cut((list(range(7)), [3, 4])) is None    # shorter than MIN_MID_SPLIT_TOKENS
    assert MIN_MID_SPLIT_TOKENS == 8
    assert mid_cut((list(range(12)), [12])) is None     # one word: never cut inside
    inc = CounterDict()
    (p,) = make_pairs([s], max_seq_length=64, short_seq_prob=0.0, pair_task="sop",
                      rng=random.Random(0), inc=inc)
    assert sorted([p.a_ids, p.b_ids]) == [list(range(6)), list(range(6, 10))]
    assert inc["pairs:single_split_mid"] == 1
    # A short sentence alone in its document: dropped, counted, no pair.
    inc = CounterDict()
    assert make_pairs(sents((0, [2, 3])), max_seq_length=64, short_seq_prob=0.0,
                      pair_task="sop", rng=random.Random(0), inc=inc) == []
    assert inc.as_dict() == {"pairs:single_dropped": 1}


class ScriptedRandom(random.Random):
    """random() replays a script (then 0.99); getrandbits as usual."""

    def __init__(self, script):
        super().__init__(0)
        self.script = list(script)

    def random(self):
        return self.script.pop(0) if self.script else 0.99


def test_one_sentence_chunk_merged_with_its_neighbour():
    # A short target (draw 0.0 < 0.5, then randint -> 2) closes the chunk after
    # sentence 1 alone; it has no clause mark and fits with sentence 2: merged.
    doc = sents((0, [2, 2]), (100, [3]), (200, [1, 1]))
    inc = CounterDict()
    pairs = make_pairs(doc, max_seq_length=64, short_seq_prob=0.5, pair_task="sop",
                       rng=ScriptedRandom([0.0, 0.0]), inc=inc)
    # Chunk 1 = sentences 1+2 (merged); the last sentence (2 tokens, no mark)
    # would be alone: it joins the chunk instead (fits), so one pair of three.
    assert len(pairs) == 1
    p = pairs[0]
    assert sorted(p.a_ids + p.b_ids) == [0, 1, 2, 3, 100, 101, 102, 200, 201]
    assert inc["pairs:single_merged"] == 2 and "pairs:single_dropped" not in inc
    # The last sentence is absorbed only when it fits: at max_seq_length 12
    # (9 tokens per pair) sentences 1-2 fill the chunk, 9 + 3 does not fit,
    # and a 3-token last sentence alone is too short to cut: dropped.
    doc = sents((0, [2, 3]), (100, [2, 2]), (200, [1, 1, 1]))
    inc = CounterDict()
    pairs = make_pairs(doc, max_seq_length=12, short_seq_prob=0.0, pair_task="sop",
                       rng=random.Random(0), inc=inc)
    assert len(pairs) == 1
    assert sorted(pairs[0].a_ids + pairs[0].b_ids) == [0, 1, 2, 3, 4, 100, 101, 102, 103]
    assert inc["pairs:single_dropped"] == 1 and "pairs:single_merged" not in inc
    # With a clause mark the last sentence is cut on its own instead.
    doc = sents((0, [2, 3]), (100, [2, 2]), (200, [1, 1, 1, 1]))
    inc = CounterDict()
    pairs = make_pairs(doc, max_seq_length=12, short_seq_prob=0.0, pair_task="sop",
                       rng=random.Random(0), inc=inc, clause_ids=frozenset({201}))
    assert len(pairs) == 2 and sorted([pairs[1].a_ids, pairs[1].b_ids]) == [[200, 201], [202, 203]]
    assert inc["pairs:single_split_clause"] == 1


def test_one_sentence_handling_is_deterministic():
    """Same RNG state, same pairs (every draw comes from the pass RNG)."""
    rng = random.Random(9)
    docs = [make_doc_with_clauses(rng, d * 1000, rng.randint(1, 6), lo=2, hi=15)
            for d in range(300)]
    kw = dict(max_seq_length=24, short_seq_prob=0.3, clause_ids=frozenset({CLAUSE}),
              punct_ids=PUNCT)
    for d, doc in enumerate(docs):
        a = make_pairs(doc, pair_task="sop", rng=random.Random(d), **kw)
        assert a == make_pairs(doc, pair_task="sop", rng=random.Random(d), **kw)
        assert make_pairs(doc, pair_task="nsp", rng=random.Random(d), **kw) == make_pairs(
            doc, pair_task="nsp", rng=random.Random(d), **kw)


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


def test_nsp_every_instance_is_a_pair_and_rate_is_half():
    """NSP: no single-segment instance either (an actual-next chunk of one
    sentence is cut like SOP's; a random-next one keeps the sentence as A);
    random next 50% ± 1% over ALL instances; B is from another document
    exactly when the label is 1."""
    rng = random.Random(4)
    others = [make_doc(rng, 10**9 + k * 10_000, 8) for k in range(20)]

    def random_doc(r: random.Random):
        return others[int(r.random() * len(others))]

    inc = CounterDict()
    labels = Counter()
    for d in range(11_000):
        n_sent = 1 if d % 10 == 0 else rng.randint(2, 20)
        doc = make_doc_with_clauses(rng, d * 1000, n_sent, lo=2, hi=12)
        for p in make_pairs(doc, max_seq_length=20, short_seq_prob=0.1, pair_task="nsp",
                            rng=random.Random(d), random_doc=random_doc, inc=inc,
                            clause_ids=frozenset({CLAUSE}), punct_ids=PUNCT):
            check_units(p)
            assert p.b_ids is not None and content(p.a_ids) and content(p.b_ids)
            assert all(i < 10**9 for i in p.a_ids) and is_run(content(p.a_ids))
            labels[p.label] += 1
            from_other = all(i >= 10**9 for i in p.b_ids)
            assert from_other == (p.label == 1)
            if p.label == 0:
                assert content(p.a_ids)[-1] < content(p.b_ids)[0]
    n = labels[0] + labels[1]
    assert n > 20_000 and abs(labels[1] / n - 0.5) < 0.01
    got = inc.as_dict()
    assert got["pairs:nsp:random_next"] == labels[1]
    assert got["pairs:nsp:actual_next"] == labels[0]
    for k in ("pairs:single_split_clause", "pairs:single_split_mid", "pairs:single_merged",
              "pairs:single_dropped"):
        assert got[k] > 0, k


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


def test_long_one_sentence_document_is_cut_then_truncated():
    inc = CounterDict()
    doc = [(list(range(100)), [1] * 100)]
    (p,) = make_pairs(doc, max_seq_length=20, short_seq_prob=0.0, pair_task="sop",
                      rng=random.Random(0), inc=inc)
    # Cut at 50 (no clause mark), then BERT truncation to 17: A loses 41, B 42.
    assert len(p.a_ids) == 9 and len(p.b_ids) == 8
    first, second = (p.a_ids, p.b_ids) if p.label == 0 else (p.b_ids, p.a_ids)
    assert is_run(first) and is_run(second) and first[-1] < 50 <= second[0]
    assert inc["pairs:single_split_mid"] == 1 and inc["pairs:truncated"] == 1
