"""Masked-LM target selection: token, whole-word (wwm) and n-gram masking.

Works on token ids plus, per segment, the lengths of its *units*: a unit is
the tokens of one segmenter word, or a single token where a word's span does
not line up with token boundaries (the fallback). ``instances.InstanceBuilder.
prepare`` computes them once per document; [CLS]/[SEP]/[PAD] lie outside every
segment and are never masked.

Whole words come from the segmenter, not from ``##`` prefixes, so a Chinese
character inside a word keeps its plain id as input and as label; no ``##``
form of a CJK character is ever produced (brightmart/albert_zh emits ``##字``
label ids; that bug is not reproduced). ``##`` ids appear only where WordPiece
really produced them for a non-CJK word (``play ##ing``), as the real token.

Every random draw comes from the caller's ``random.Random`` and only through
its primitives ``random()`` (see ``randbelow``) and ``getrandbits()``, so
results do not depend on CPython's private ``_randbelow``/``shuffle``.
"""

from __future__ import annotations

import dataclasses
import random
import re
from itertools import accumulate
from typing import Mapping, Sequence

STRATEGIES = ("token", "wwm", "ngram")
NGRAM_DISTS = ("albert", "geometric")
DECISIONS = ("per_word", "per_token")
GEOMETRIC_P = 0.2  # SpanBERT

# [PAD] [UNK] [CLS] [SEP] [MASK] [unused12] [BOS] ...: never a random replacement.
_SPECIAL_TOKEN_RE = re.compile(r"^\[(unused\d+|[A-Z_]+)\]$")


def randbelow(rng: random.Random, n: int) -> int:
    """A uniform integer in ``[0, n)``: ``int(rng.random() * n)``.

    ``random()`` is the one ``Random`` method whose sequence Python promises
    to keep across versions; the bias of scaling a 53-bit float is < n/2**53.
    Hot loops inline the same expression.
    """
    return int(rng.random() * n)


def randint(rng: random.Random, a: int, b: int) -> int:
    """A uniform integer in ``[a, b]`` (inclusive, like ``random.randint``)."""
    return a + randbelow(rng, b - a + 1)


def masked_lm_budget(num_tokens: int, masked_lm_prob: float, max_predictions_per_seq: int) -> int:
    """How many tokens to mask: ``min(max_pred, max(1, round(num_tokens * prob)))``.

    ``num_tokens`` counts real tokens only, excluding [CLS]/[SEP]/[PAD]: those
    can never be masked, so counting them (as BERT does) would ask for more
    than 15% of what can be predicted. ``round`` is Python's (half to even),
    as in BERT's ``int(round(...))``.
    """
    return min(max_predictions_per_seq, max(1, int(round(num_tokens * masked_lm_prob))))


def is_special_token(token: str) -> bool:
    return bool(_SPECIAL_TOKEN_RE.match(token))


def replacement_ids(vocab: Mapping[str, int]) -> list[int]:
    """Ids a masked token may be replaced by: no special tokens, no ``##`` pieces,
    no empty or whitespace-holding entries (U+2028 in the standard Chinese vocab:
    whitespace separates words, so the tokenizer never produces them)."""
    return sorted(i for t, i in vocab.items()
                  if t and not t.startswith("##") and not is_special_token(t)
                  and not any(c.isspace() for c in t))


def ngram_weights(max_n: int, dist: str = "albert") -> list[float]:
    """Unnormalised p(n) for n = 1..max_n.

    ``albert``: p(n) ∝ 1/n (6/11, 3/11, 2/11 for max_n=3), as ALBERT's default.
    ``geometric``: SpanBERT's p(n) ∝ 0.2·0.8^(n-1), truncated at max_n.
    """
    if dist == "albert":
        return [1.0 / n for n in range(1, max_n + 1)]
    if dist == "geometric":
        return [GEOMETRIC_P * (1 - GEOMETRIC_P) ** (n - 1) for n in range(1, max_n + 1)]
    raise ValueError(f"unknown ngram_dist {dist!r}; expected one of {NGRAM_DISTS}")


class NgramSampler:
    """Draws an n-gram length in ``1..k`` (k ≤ max_n, fewer words may be left)."""

    def __init__(self, max_n: int, dist: str = "albert") -> None:
        if max_n < 1:
            raise ValueError("ngram must be >= 1")
        w = ngram_weights(max_n, dist)
        # cum[k-1]: cumulative distribution over 1..k, renormalised (ALBERT
        # renormalises when fewer than max_n words remain).
        self._cum: list[list[float]] = []
        for k in range(1, max_n + 1):
            total = sum(w[:k])
            acc = 0.0
            c = []
            for x in w[:k]:
                acc += x / total
                c.append(acc)
            c[-1] = 1.0
            self._cum.append(c)
        self.max_n = max_n

    def sample(self, rng: random.Random, k: int) -> int:
        c = self._cum[min(k, self.max_n) - 1]
        r = rng.random()
        for n, edge in enumerate(c, 1):
            if r < edge:
                return n
        return len(c)


@dataclasses.dataclass
class MaskConfig:
    """The masking half of ``instances.InstanceConfig`` (validated)."""

    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    masking: str = "wwm"
    ngram: int = 3
    ngram_dist: str = "albert"
    mask_decision: str = "per_word"

    def __post_init__(self) -> None:
        if self.masking not in STRATEGIES:
            raise ValueError(f"unknown masking {self.masking!r}; expected one of {STRATEGIES}")
        if self.mask_decision not in DECISIONS:
            raise ValueError(f"unknown mask_decision {self.mask_decision!r}; expected one of {DECISIONS}")
        if self.ngram_dist not in NGRAM_DISTS:
            raise ValueError(f"unknown ngram_dist {self.ngram_dist!r}; expected one of {NGRAM_DISTS}")
        # The same bounds as the --masked_lm_prob option (instances.InstanceConfig).
        if not 0.0 < self.masked_lm_prob <= 1.0:
            raise ValueError("masked_lm_prob must be in (0, 1]")
        if self.max_predictions_per_seq < 1 or self.ngram < 1:
            raise ValueError("max_predictions_per_seq and ngram must be >= 1")


@dataclasses.dataclass
class MaskResult:
    input_ids: list[int]          # with [MASK] / random / kept tokens
    positions: list[int]          # ascending
    labels: list[int]             # original ids at ``positions``
    token_boundary: list[int]     # 1 at [CLS]/[SEP] and each unit's first token ([] if not asked)
    budget: int
    spans: list[tuple[int, int]]  # the masked units/n-grams as [start, end), in choice order
    partial: bool = False         # the last span is a prefix of a word (see ``_fill_budget``)

    @property
    def units(self) -> int:
        """How many units (words, tokens or n-grams) were masked."""
        return len(self.spans)


def segment_units(segments: Sequence[tuple[int, Sequence[int]]],
                  with_seg_end: bool = False) -> tuple[list[int], list[int], list[int]]:
    """Unit ``[start, end)`` positions and (if asked) each unit's segment end.

    ``segments``: per segment, the position of its first token and its unit
    lengths (whole words; 1 for fallback tokens). The segment end is the index
    after the segment's last unit.
    """
    ustart: list[int] = []
    uend: list[int] = []
    seg_end: list[int] = []
    for off, lens in segments:
        bounds = list(accumulate(lens, initial=off))
        ustart += bounds[:-1]
        uend += bounds[1:]
        if with_seg_end:
            seg_end += [len(ustart)] * len(lens)
    return ustart, uend, seg_end


def token_boundary_of(length: int, segments: Sequence[tuple[int, Sequence[int]]]) -> list[int]:
    """ALBERT's ``token_boundary``: 1 at the first token of each unit (word
    start or fallback token) and at every position outside the segments
    ([CLS] and each [SEP]: ALBERT's create_pretraining_data.py sets 1 there),
    0 inside a word."""
    out = [1] * length
    for off, lens in segments:
        end = off + sum(lens)
        out[off:end] = [0] * (end - off)
        for s in accumulate(lens[:-1], initial=off):
            out[s] = 1
    return out


def mask_sequence(input_ids: Sequence[int], segments: Sequence[tuple[int, Sequence[int]]],
                  cfg: MaskConfig, rng: random.Random, mask_id: int,
                  replace_ids: Sequence[int], sampler: NgramSampler | None = None,
                  with_boundary: bool = True) -> MaskResult:
    """Choose and apply masked-LM targets for one packed sequence.

    ``segments`` lists, per segment (A, then B), the position of its first
    token in ``input_ids`` and its unit lengths; positions outside segments
    ([CLS], [SEP]) are never masked. Units (a token, a whole word, or an
    n-gram of whole words within one segment) are visited in a random order
    and taken greedily while they fit the budget; a unit that would overflow
    it is skipped (BERT). For n-grams, ALBERT's rule: draw n, shorten while it
    overflows, skip if it overlaps an already masked word. The 80/10/10
    [MASK]/random/keep choice is made once per unit (``mask_decision="per_word"``)
    or once per token (``"per_token"``).

    The number of masked tokens is always exactly the budget,
    ``min(max_pred, max(1, round(num_tokens * prob)))``: when the greedy pass
    leaves part of it unused because every word left is longer than the rest
    (a short sequence of long words; BERT then masks fewer tokens, and a
    sequence whose every word exceeds a budget of 1 would get no prediction
    at all), ``_fill_budget`` tops it up, whole unmasked words first, then a
    prefix of one longer word (``MaskResult.partial``).
    """
    out = list(input_ids)
    num_tokens = 0
    for _, lens in segments:
        num_tokens += sum(lens)
    budget = masked_lm_budget(num_tokens, cfg.masked_lm_prob, cfg.max_predictions_per_seq)

    if cfg.masking == "token":
        starts: list[int] = []
        for off, lens in segments:
            starts += range(off, off + sum(lens))
        chosen, taken = _take_units(starts, [s + 1 for s in starts], budget, rng)
    elif cfg.masking == "wwm":
        ustart, uend, _ = segment_units(segments)
        chosen, taken = _take_units(ustart, uend, budget, rng)
    else:
        if sampler is None:
            sampler = NgramSampler(cfg.ngram, cfg.ngram_dist)
        ustart, uend, seg_end = segment_units(segments, with_seg_end=True)
        chosen, taken = _take_ngrams(ustart, uend, seg_end, budget, rng, sampler)
    partial = False
    if cfg.masking != "token" and taken < budget:
        extra, partial = _fill_budget(ustart, uend, chosen, budget - taken, rng)
        chosen += extra

    positions: list[int] = []
    per_token = cfg.mask_decision == "per_token"
    nrep = len(replace_ids)
    rand = rng.random
    r = 0.0
    for a, b in chosen:
        if not per_token:
            r = rand()
        for i in range(a, b):
            if per_token:
                r = rand()
            positions.append(i)
            if r < 0.8:
                out[i] = mask_id
            elif r >= 0.9:
                out[i] = replace_ids[int(rand() * nrep)]
            # else (0.8 <= r < 0.9): keep the original token
    positions.sort()
    labels = [input_ids[i] for i in positions]
    boundary = token_boundary_of(len(out), segments) if with_boundary else []
    return MaskResult(out, positions, labels, boundary, budget, chosen, partial)


def _fill_budget(ustart: list[int], uend: list[int], chosen: list[tuple[int, int]], left: int,
                 rng: random.Random) -> tuple[list[tuple[int, int]], bool]:
    """Spans that fill the ``left`` tokens the greedy selection could not.

    First whole unmasked units that fit, in a random order: only n-gram
    selection leaves such a unit (it skips an n-gram that overlaps a masked
    word although its first word alone would fit; wwm's greedy pass has
    already tried every unit). Then, if tokens are still left, every unmasked
    unit is longer than what is left: the first ``left`` tokens of one of
    them, drawn uniformly, are masked (a word prefix, so the budget holds
    exactly; a prefix, not a random window, keeps the start of the word that
    ``token_boundary`` marks). Returns the spans and whether a prefix was
    used. The caller guarantees ``left`` <= the unmasked tokens.
    """
    covered: set[int] = set()
    for a, b in chosen:
        covered.update(range(a, b))
    free = [u for u in range(len(ustart)) if ustart[u] not in covered]
    rand = rng.random
    out: list[tuple[int, int]] = []
    fits = [u for u in free if uend[u] - ustart[u] <= left]
    if fits:
        used: set[int] = set()
        n = len(fits)
        for i in range(n):
            j = i + int(rand() * (n - i))
            u = fits[j]
            fits[j] = fits[i]
            size = uend[u] - ustart[u]
            if size <= left:
                out.append((ustart[u], uend[u]))
                used.add(u)
                left -= size
                if not left:
                    return out, False
        free = [u for u in free if u not in used]
    u = free[int(rand() * len(free))]
    out.append((ustart[u], ustart[u] + left))
    return out, True


def _take_units(ustart: list[int], uend: list[int], budget: int,
                rng: random.Random) -> tuple[list[tuple[int, int]], int]:
    """Greedy over a random order of the units; returns the chosen ``(start, end)``
    and how many tokens they hold.

    A partial Fisher-Yates shuffle: each step draws the next unit uniformly
    from those not yet visited, so the visiting order is that of a full
    shuffle, but we stop as soon as the budget is full.
    """
    n = len(ustart)
    order = list(range(n))
    rand = rng.random
    chosen: list[tuple[int, int]] = []
    taken = 0
    for i in range(n):
        j = i + int(rand() * (n - i))
        u = order[j]
        order[j] = order[i]
        a = ustart[u]
        b = uend[u]
        if taken + b - a > budget:
            continue
        chosen.append((a, b))
        taken += b - a
        if taken >= budget:
            break
    return chosen, taken


def _take_ngrams(ustart: list[int], uend: list[int], seg_end: list[int], budget: int,
                 rng: random.Random, sampler: NgramSampler) -> tuple[list[tuple[int, int]], int]:
    """ALBERT's n-gram selection over whole words; n-grams never cross a segment.
    Returns the chosen ``(start, end)`` and how many tokens they hold."""
    nw = len(ustart)
    covered = [False] * nw
    order = list(range(nw))
    rand = rng.random
    max_n = sampler.max_n
    chosen: list[tuple[int, int]] = []
    taken = 0
    for i in range(nw):
        j = i + int(rand() * (nw - i))
        w = order[j]
        order[j] = order[i]
        g = sampler.sample(rng, min(max_n, seg_end[w] - w))
        a = ustart[w]
        # ALBERT: shorten while the n-gram would overflow the budget.
        while g > 1 and taken + uend[w + g - 1] - a > budget:
            g -= 1
        size = uend[w + g - 1] - a
        if taken + size > budget:
            continue
        if any(covered[w:w + g]):
            continue
        for x in range(w, w + g):
            covered[x] = True
        chosen.append((a, a + size))
        taken += size
        if taken >= budget:
            break
    return chosen, taken
