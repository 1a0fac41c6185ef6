"""Masking: budget, unit selection (token / wwm / ngram), 80/10/10, samplers."""

from __future__ import annotations

import random
from collections import Counter
from itertools import accumulate

import pytest

from corpusflow.pretrain import masking
from corpusflow.pretrain.masking import (MaskConfig, NgramSampler, mask_sequence,
                                         masked_lm_budget, replacement_ids)

CLS, SEP, MASK = 2, 3, 4
REPLACE = list(range(5000, 10000))   # disjoint from input ids: "random" is recognisable


WORD_LENGTHS = (1, 1, 1, 2, 2, 3, 4)
LONG_WORD_LENGTHS = (1, 2, 4, 6, 9)


def random_sequence(rng: random.Random, pair: bool = True, max_unit: int = 4,
                    lengths: tuple[int, ...] = WORD_LENGTHS):
    """[CLS] A [SEP] (B [SEP]) with random unit lengths and ids 1000..4999."""
    def seg():
        return [min(max_unit, rng.choice(lengths)) for _ in range(rng.randint(1, 40))]
    a = seg()
    ids = [CLS] + [rng.randrange(1000, 5000) for _ in range(sum(a))] + [SEP]
    segments = [(1, a)]
    if pair:
        b = seg()
        segments.append((len(ids), b))
        ids += [rng.randrange(1000, 5000) for _ in range(sum(b))] + [SEP]
    return ids, segments


def unit_list(segments):
    """[(segment index, start, end)] for every unit."""
    out = []
    for k, (off, lens) in enumerate(segments):
        pos = off
        for n in lens:
            out.append((k, pos, pos + n))
            pos += n
    return out


def test_budget_formula():
    assert masked_lm_budget(0, 0.15, 20) == 1          # at least one
    assert masked_lm_budget(3, 0.15, 20) == 1
    assert masked_lm_budget(10, 0.15, 20) == 2         # round(1.5) = 2
    assert masked_lm_budget(125, 0.15, 20) == 19       # 18.75
    assert masked_lm_budget(200, 0.15, 20) == 20       # capped
    assert masked_lm_budget(509, 0.15, 80) == 76


def test_replacement_ids_exclude_specials_and_continuations():
    vocab = {t: i for i, t in enumerate(
        ["[PAD]", "[unused1]", "[unused99]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]",
         "的", "##的", "a", "##ing", "[", "]", "[abc"])}
    assert [t for t, i in vocab.items() if i in replacement_ids(vocab)] == ["的", "a", "[", "]", "[abc"]


def test_mask_config_validation():
    for bad in (dict(masking="span"), dict(mask_decision="x"), dict(ngram_dist="zipf"),
                dict(masked_lm_prob=0.0), dict(ngram=0)):
        with pytest.raises(ValueError):
            MaskConfig(**bad)


@pytest.mark.parametrize("dist,max_n,k,expected", [
    ("albert", 3, 3, [6 / 11, 3 / 11, 2 / 11]),
    ("albert", 3, 2, [2 / 3, 1 / 3]),          # fewer words left: renormalised
    ("geometric", 3, 3, [0.2 / 0.488, 0.16 / 0.488, 0.128 / 0.488]),
])
def test_ngram_length_frequencies(dist, max_n, k, expected):
    sampler = NgramSampler(max_n, dist)
    rng = random.Random(7)
    n = 200_000
    counts = Counter(sampler.sample(rng, k) for _ in range(n))
    assert sorted(counts) == list(range(1, len(expected) + 1))
    for length, p in enumerate(expected, 1):
        assert abs(counts[length] / n - p) < 0.01, (length, counts[length] / n, p)


@pytest.mark.parametrize("strategy,decision", [("token", "per_token"), ("wwm", "per_word"),
                                               ("ngram", "per_word")])
def test_80_10_10(strategy, decision):
    """≥100k masked tokens: [MASK] 80%, random 10%, kept 10%, each within ±0.5%."""
    # A high masking rate gives many masked tokens per (costly) sequence.
    cfg = MaskConfig(masking=strategy, mask_decision=decision, masked_lm_prob=0.5,
                     max_predictions_per_seq=80)
    rng = random.Random(11)
    data = random.Random(12)
    c = Counter()
    while sum(c.values()) < 120_000:
        ids, segs = random_sequence(data, max_unit=2)
        m = mask_sequence(ids, segs, cfg, rng, MASK, REPLACE)
        for p in m.positions:
            new = m.input_ids[p]
            c["mask" if new == MASK else "random" if new >= 5000 else "keep"] += 1
            assert new == MASK or new >= 5000 or new == ids[p]
    n = sum(c.values())
    assert abs(c["mask"] / n - 0.8) < 0.005
    assert abs(c["random"] / n - 0.1) < 0.005
    assert abs(c["keep"] / n - 0.1) < 0.005


def test_per_word_decision_is_shared_by_the_unit():
    cfg = MaskConfig(masking="wwm", mask_decision="per_word")
    rng = random.Random(3)
    data = random.Random(4)
    for _ in range(300):
        ids, segs = random_sequence(data)
        m = mask_sequence(ids, segs, cfg, rng, MASK, REPLACE)
        for a, b in m.spans:
            kinds = {"mask" if m.input_ids[i] == MASK else "rand" if m.input_ids[i] >= 5000
                     else "keep" for i in range(a, b)}
            assert len(kinds) == 1


@pytest.mark.parametrize("strategy", ["token", "wwm", "ngram"])
@pytest.mark.parametrize("lengths", [WORD_LENGTHS, LONG_WORD_LENGTHS])
def test_selection_properties(strategy, lengths):
    """Thousands of sequences: exactly the budget of predictions every time,
    whole units except at most one word prefix (only when no whole unit fits
    what is left), specials never masked, labels are the original ids."""
    cfg = MaskConfig(masking=strategy, ngram=3)
    rng = random.Random(5)
    data = random.Random(6)
    partials = 0
    for it in range(1500):
        ids, segs = random_sequence(data, pair=it % 3 != 0, max_unit=9, lengths=lengths)
        m = mask_sequence(ids, segs, cfg, rng, MASK, REPLACE)
        units = unit_list(segs)
        num_tokens = sum(sum(lens) for _, lens in segs)
        assert m.budget == masked_lm_budget(num_tokens, 0.15, 20)
        assert len(m.positions) == m.budget
        assert m.positions == sorted(set(m.positions))
        assert m.labels == [ids[p] for p in m.positions]
        specials = {0} | {off - 1 for off, _ in segs[1:]} | {len(ids) - 1}
        assert not specials & set(m.positions)
        assert all(m.input_ids[i] == ids[i] for i in range(len(ids)) if i not in m.positions)
        assert sorted(p for a, b in m.spans for p in range(a, b)) == m.positions
        starts = {u[1] for u in units}
        ends = {u[2] for u in units}
        taken_units = set()
        spans = m.spans
        if m.partial:
            # The last span: the first tokens of one untouched unit, which is
            # longer than the span; every other untouched unit is too.
            partials += 1
            a, b = spans[-1]
            spans = spans[:-1]
            (owner,) = [u for u in units if u[1] == a]
            assert owner[1] < b < owner[2]
            whole = {p for x, y in spans for p in range(x, y)}
            left = m.budget - len(whole)
            assert left == b - a
            assert all(u[2] - u[1] > left for u in units
                       if not whole & set(range(u[1], u[2])))
        for a, b in spans:
            if strategy == "token":
                assert b == a + 1
                continue
            # Begins and ends on unit boundaries of one segment.
            assert a in starts and b in ends
            inside = [u for u in units if a <= u[1] and u[2] <= b]
            assert sum(u[2] - u[1] for u in inside) == b - a
            assert len({u[0] for u in inside}) == 1
            assert len(inside) == 1 if strategy == "wwm" else 1 <= len(inside) <= 3
            taken_units.update(inside)
        assert m.token_boundary == [1 if i in starts or i in specials else 0
                                    for i in range(len(ids))]
    # Long words make prefixes necessary now and then; never with tokens.
    if strategy == "token":
        assert partials == 0
    else:
        assert (10 < partials < 50) if lengths == WORD_LENGTHS else 50 < partials < 200


def test_word_longer_than_the_budget_gets_a_prefix_masked():
    """[CLS] w1 w2 [SEP]: two 4-token words, 8 tokens -> budget 1. No whole
    word fits: the first token of one of them is masked (never zero
    predictions); across seeds both words are chosen."""
    ids = [CLS] + list(range(1000, 1008)) + [SEP]
    segs = [(1, [4, 4])]
    firsts = Counter()
    for seed in range(200):
        for strategy in ("wwm", "ngram"):
            m = mask_sequence(ids, segs, MaskConfig(masking=strategy), random.Random(seed),
                              MASK, REPLACE)
            assert m.budget == 1 and len(m.positions) == 1 and m.partial
            assert m.positions in ([1], [5]) and m.spans in ([(1, 2)], [(5, 6)])
            firsts[m.positions[0]] += 1
    assert firsts[1] > 150 and firsts[5] > 150
    # 3 words of 3 tokens, budget round(1.35) = 1 with 9 tokens; with prob 0.5:
    # budget round(4.5) = 4 -> one whole word (3) plus a 1-token prefix.
    ids = [CLS] + list(range(1000, 1009)) + [SEP]
    m = mask_sequence(ids, [(1, [3, 3, 3])], MaskConfig(masked_lm_prob=0.5), random.Random(1),
                      MASK, REPLACE)
    assert m.budget == 4 and len(m.positions) == 4 and m.partial
    (w0, w1), (p0, p1) = m.spans
    assert w1 - w0 == 3 and w0 in (1, 4, 7) and p1 - p0 == 1 and p0 in (1, 4, 7) and p0 != w0


def test_ngram_fill_takes_whole_words_first():
    """An n-gram overlapping a masked word is skipped even when its first word
    alone would fit (ALBERT); the fill then takes such whole words, and a
    prefix only when none fits."""
    cfg = MaskConfig(masking="ngram", masked_lm_prob=0.5, max_predictions_per_seq=80)
    data = random.Random(3)
    partial = 0
    for seed in range(400):
        lens = [data.choice([1, 2]) for _ in range(data.randint(2, 12))]
        ids = [CLS] + [1000 + i for i in range(sum(lens))] + [SEP]
        m = mask_sequence(ids, [(1, lens)], cfg, random.Random(seed), MASK, REPLACE)
        assert len(m.positions) == m.budget
        if m.partial:
            partial += 1
            # Only a 2-token word can need a prefix, and then no 1-token word
            # was left unmasked.
            masked = set(m.positions)
            bounds = list(accumulate(lens, initial=1))
            free = [(a, b) for a, b in zip(bounds, bounds[1:]) if not masked & set(range(a, b))]
            assert all(b - a == 2 for a, b in free)
    assert partial > 0


def test_token_boundary_is_albert_s():
    """1 at [CLS], at every [SEP] and at each word start; 0 inside words."""
    ids = [CLS, 10, 11, 12, SEP, 20, 21, SEP]
    segs = [(1, [1, 2]), (5, [2])]
    assert masking.token_boundary_of(len(ids), segs) == [1, 1, 1, 0, 1, 1, 0, 1]
    m = mask_sequence(ids, segs, MaskConfig(), random.Random(0), MASK, REPLACE)
    assert m.token_boundary == [1, 1, 1, 0, 1, 1, 0, 1]
    assert masking.token_boundary_of(3, [(1, [1])]) == [1, 1, 1]
    assert mask_sequence(ids, segs, MaskConfig(), random.Random(0), MASK, REPLACE,
                         with_boundary=False).token_boundary == []


def test_ngram_lengths_are_mostly_short_and_never_cross_segments():
    cfg = MaskConfig(masking="ngram", ngram=3, max_predictions_per_seq=200, masked_lm_prob=0.3)
    rng = random.Random(8)
    data = random.Random(9)
    sizes = Counter()
    for _ in range(500):
        ids, segs = random_sequence(data, max_unit=1)   # one token per word
        m = mask_sequence(ids, segs, cfg, rng, MASK, REPLACE)
        for a, b in m.spans:
            sizes[b - a] += 1
    assert set(sizes) <= {1, 2, 3}
    assert sizes[1] > sizes[2] > sizes[3] > 0


def test_deterministic_given_rng_state():
    cfg = MaskConfig(masking="ngram")
    ids, segs = random_sequence(random.Random(1))
    a = mask_sequence(ids, segs, cfg, random.Random(99), MASK, REPLACE)
    b = mask_sequence(ids, segs, cfg, random.Random(99), MASK, REPLACE)
    c = mask_sequence(ids, segs, cfg, random.Random(100), MASK, REPLACE)
    assert a == b and a != c


def test_randbelow_uniform():
    rng = random.Random(2)
    c = Counter(masking.randbelow(rng, 7) for _ in range(70_000))
    assert set(c) == set(range(7)) and max(c.values()) - min(c.values()) < 600
    assert all(masking.randint(rng, 2, 4) in (2, 3, 4) for _ in range(100))
