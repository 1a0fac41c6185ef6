"""Packing a document's sentences into A/B segment pairs (BERT), SOP and NSP.

Input: one document as ``(token ids, unit lengths)`` per sentence (see
``masking``); output: ``Pair`` records, each becoming one instance.

Packing follows BERT's ``create_instances_from_document``: sentences are added
to a chunk until it reaches ``target_seq_length`` (``max_seq_length - 3``, or
with probability ``short_seq_prob`` a random length in ``[2, max - 3]``), and
the chunk is split at a random sentence boundary into A and B. Differences:

* the short target is redrawn for every chunk (BERT draws it once per
  document), so ``short_seq_prob`` is the share of short chunks;
* ``sop`` (ALBERT): B is the rest of the chunk; with probability 0.5 A and B
  are swapped, label 1 = swapped. A chunk of one sentence is never given a
  random-document negative (ALBERT does that, which mixes NSP into SOP);
* ``nsp`` (BERT): the coin is drawn first for every chunk, so the random-next
  rate is exactly 0.5. Random next: A is the first ``a_end`` sentences, B comes
  from another document from ``random_doc(rng)`` (the caller's bounded window;
  it must not return the current document), unused sentences go back to the
  stream as in BERT. ``random_doc`` returning ``None`` gives an actual-next
  pair instead (counted ``pairs:nsp:no_negative``);
* ``none``: single segments ``[CLS] A [SEP]`` packed up to
  ``max_seq_length - 2``; the label is the constant 0 and every segment id is
  0, so the label feature carries nothing to learn (it is only written because
  the schema has it).

One-sentence chunks. With ``sop`` and ``nsp`` every instance is a real pair:
a single-segment instance would always carry label 0 (in order / actual
next), and "no second segment => 0" would be a free shortcut (it was 11-14%
of the SOP instances on real news, which skewed the labels to 55/45). A
chunk that would hold one sentence is, in this order of preference:

1. cut in two after a clause mark (``punct.CLAUSE_PUNCT``: ，；：、) at a word
   boundary, the mark chosen uniformly with the pass RNG among those that
   leave a non-punctuation token on both sides (``pairs:single_split_clause``);
2. merged with the next sentence when the two fit in ``max_seq_length - 3``
   tokens (``pairs:single_merged``), so SOP keeps a real sentence boundary;
3. cut at the word boundary nearest its middle when it has at least
   ``MIN_MID_SPLIT_TOKENS`` tokens and two words (``pairs:single_split_mid``);
4. merged with the next sentence even though the pair is then truncated
   (``pairs:single_merged``);
5. dropped (``pairs:single_dropped``): only a short sentence without clause
   marks that is alone in its document or is the document's last one.

A document's last sentence that would be left alone after the previous chunk
closed joins that chunk instead when it has no clause mark and fits
(``pairs:single_merged``). All of this is decided before the SOP/NSP coin, so
neither a cut nor a drop depends on the label: the labels stay 50/50 over all
instances. An NSP random-next chunk of one sentence keeps the whole sentence
as A (the cut, chosen and counted before the coin, is then unused). Cuts are
between units (whole words), never inside one.

Pairs over the limit lose tokens from the longer segment, front or back by a
coin flip per token (BERT's ``truncate_seq_pair``; see ``truncate_pair``).
"""

from __future__ import annotations

import dataclasses
import random
from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import Any, Callable, Optional, Sequence

from corpusflow.counters import Inc, null_inc, register
from corpusflow.pretrain.masking import randbelow, randint

COUNTERS = register([
    "pairs:sop:swapped",
    "pairs:sop:in_order",
    "pairs:nsp:random_next",
    "pairs:nsp:actual_next",
    "pairs:nsp:no_negative",
    "pairs:single_split_clause",
    "pairs:single_split_mid",
    "pairs:single_merged",
    "pairs:single_dropped",
    "pairs:truncated",
])

PAIR_TASKS = ("sop", "nsp", "none")
# A one-sentence chunk without clause marks is cut at its middle only from
# this length on (tokens): shorter halves say little about order.
MIN_MID_SPLIT_TOKENS = 8

Sentence = tuple[list[int], list[int]]  # (token ids, unit lengths summing to len(ids))
# What ``random_doc`` may return: a PreparedDoc (anything with ``.sentences``),
# a list of (ids, unit lengths) sentences, or a list of plain id lists (each
# token is then its own masking unit).
RandomDoc = Callable[[random.Random], Any]


@dataclasses.dataclass
class Pair:
    a_ids: list[int]
    a_units: list[int]              # unit lengths, sum == len(a_ids)
    b_ids: Optional[list[int]]      # None: a single-segment instance
    b_units: Optional[list[int]]
    label: int                      # SOP: 1 = swapped; NSP: 1 = random next


def _as_sentences(doc: Any) -> list[Sentence]:
    """Normalise what ``random_doc`` returned (see ``RandomDoc``)."""
    sents = getattr(doc, "sentences", doc)
    out: list[Sentence] = []
    for s in sents or ():
        if isinstance(s, tuple):
            ids, units = s
        else:
            ids, units = list(s), [1] * len(s)
        if ids:
            out.append((ids, units))
    return out


def trim_units(units: list[int], front: int, back: int) -> list[int]:
    """Unit lengths after removing ``front`` and ``back`` tokens; a cut word
    keeps its remaining tokens as one (partial) unit."""
    if not front and not back:
        return units
    cum = list(accumulate(units))
    lo, hi = front, cum[-1] - back          # kept token range [lo, hi)
    i = bisect_right(cum, lo)               # first unit ending after lo
    j = bisect_left(cum, hi)                # unit holding token hi - 1
    kept = units[i:j + 1]
    kept[0] -= lo - (cum[i] - units[i])
    kept[-1] -= cum[j] - hi
    return kept


def truncation_counts(na: int, nb: int, max_num_tokens: int) -> tuple[int, int]:
    """Tokens BERT's ``truncate_seq_pair`` removes from A and from B.

    Which side loses a token depends only on the lengths (the longer one,
    B on ties), so the counts have a closed form; only front/back is random.
    """
    excess = na + nb - max_num_tokens
    if excess <= 0:
        return 0, 0
    d = abs(na - nb)
    if excess <= d:
        return (excess, 0) if na > nb else (0, excess)
    rest = excess - d                        # equal lengths now; B, A, B, A...
    ra, rb = (d, 0) if na > nb else (0, d)
    return ra + rest // 2, rb + (rest + 1) // 2


def truncate_pair(a: list[int], au: list[int], b: Optional[list[int]],
                  bu: Optional[list[int]], max_num_tokens: int, rng: random.Random
                  ) -> tuple[list[int], list[int], Optional[list[int]], Optional[list[int]], bool]:
    """BERT's ``truncate_seq_pair``: the longer side loses a token, front or
    back by a fair coin, until the pair fits.

    The per-side counts are computed in closed form and the number of front
    removals is the popcount of that many random bits (one coin per token,
    drawn at once). Returns the new ids and unit lengths and whether anything
    was removed.
    """
    na = len(a)
    nb = len(b) if b is not None else 0
    ra, rb = truncation_counts(na, nb, max_num_tokens)
    if not ra and not rb:
        return a, au, b, bu, False
    if ra:
        fa = rng.getrandbits(ra).bit_count()
        a, au = a[fa:na - (ra - fa)], trim_units(au, fa, ra - fa)
    if rb and b is not None and bu is not None:
        fb = rng.getrandbits(rb).bit_count()
        b, bu = b[fb:nb - (rb - fb)], trim_units(bu, fb, rb - fb)
    return a, au, b, bu, True


def _concat(sents: Sequence[Sentence]) -> tuple[list[int], list[int]]:
    ids: list[int] = []
    units: list[int] = []
    for i, u in sents:
        ids += i
        units += u
    return ids, units


def clause_cuts(sentence: Sentence, clause_ids: frozenset[int],
                punct_ids: frozenset[int] = frozenset()) -> list[int]:
    """Token offsets right after a clause mark that end a unit, leaving a
    token outside ``punct_ids`` on both sides (candidate one-sentence cuts)."""
    ids, units = sentence
    if clause_ids.isdisjoint(ids):           # the common case, checked in C
        return []
    marks = [b for b in accumulate(units[:-1]) if ids[b - 1] in clause_ids]
    if not marks:
        return []
    content = _content_prefix(ids, punct_ids)
    total = content[-1]
    return [b for b in marks if 0 < content[b] < total]


def mid_cut(sentence: Sentence, punct_ids: frozenset[int] = frozenset()) -> Optional[int]:
    """The unit boundary nearest the middle (the earlier one on a tie) with a
    token outside ``punct_ids`` on both sides, for a sentence of at least
    ``MIN_MID_SPLIT_TOKENS`` tokens; else None."""
    ids, units = sentence
    n = len(ids)
    if n < MIN_MID_SPLIT_TOKENS or len(units) < 2:
        return None
    content = _content_prefix(ids, punct_ids)
    total = content[-1]
    ok = [b for b in accumulate(units[:-1]) if 0 < content[b] < total]
    return min(ok, key=lambda b: (abs(2 * b - n), b)) if ok else None


def _content_prefix(ids: list[int], punct_ids: frozenset[int]) -> list[int]:
    """``out[j]``: how many of ``ids[:j]`` are not punctuation."""
    return list(accumulate((x not in punct_ids for x in ids), initial=0))


def make_pairs(sentences: Sequence[Sentence], *, max_seq_length: int, short_seq_prob: float,
               pair_task: str, rng: random.Random, random_doc: Optional[RandomDoc] = None,
               inc: Inc = null_inc, clause_ids: frozenset[int] = frozenset(),
               punct_ids: frozenset[int] = frozenset()) -> list[Pair]:
    """All pairs (one per future instance) of one document pass.

    ``clause_ids``: token ids of the clause marks (``punct.clause_ids``) where
    a one-sentence chunk may be cut; ``punct_ids``: punctuation ids, which
    cannot be the only content of a cut's side (see the module doc).
    """
    if pair_task not in PAIR_TASKS:
        raise ValueError(f"unknown pair_task {pair_task!r}; expected one of {PAIR_TASKS}")
    single = pair_task == "none"
    max_num_tokens = max_seq_length - (2 if single else 3)

    def draw_target() -> int:
        if rng.random() < short_seq_prob:
            return randint(rng, 2, max_num_tokens)
        return max_num_tokens

    pairs: list[Pair] = []
    n = len(sentences)
    target = draw_target()
    chunk: list[Sentence] = []
    length = 0
    i = 0
    while i < n:
        chunk.append(sentences[i])
        length += len(sentences[i][0])
        if i == n - 1 or length >= target:
            if single:
                a, af = _concat(chunk)
                a, af, _, _, truncated = truncate_pair(a, af, None, None, max_num_tokens, rng)
                if truncated:
                    inc("pairs:truncated")
                pairs.append(Pair(a, af, None, None, 0))
            else:
                if i < n - 1 and _extend(chunk, length, sentences, i, max_num_tokens,
                                         clause_ids, punct_ids):
                    inc("pairs:single_merged")
                    i += 1
                    continue
                cut: Optional[int] = None
                if len(chunk) == 1:
                    cuts = clause_cuts(chunk[0], clause_ids, punct_ids)
                    if cuts:
                        cut = cuts[randbelow(rng, len(cuts))]
                        inc("pairs:single_split_clause")
                    else:
                        cut = mid_cut(chunk[0], punct_ids)
                        inc("pairs:single_dropped" if cut is None else "pairs:single_split_mid")
                if len(chunk) > 1 or cut is not None:
                    i -= _emit_pair(chunk, cut, target, max_num_tokens, pair_task, rng,
                                    random_doc, inc, pairs)
            chunk = []
            length = 0
            target = draw_target()
        i += 1
    return pairs


def _extend(chunk: list[Sentence], length: int, sentences: Sequence[Sentence], i: int,
            max_num_tokens: int, clause_ids: frozenset[int], punct_ids: frozenset[int]) -> bool:
    """Whether the chunk about to close at sentence ``i`` takes sentence ``i + 1``
    too, because one of the two would otherwise be a one-sentence chunk."""
    nxt = len(sentences[i + 1][0])
    if len(chunk) == 1:
        if clause_cuts(chunk[0], clause_ids, punct_ids):
            return False                          # split at a clause mark instead
        if length + nxt <= max_num_tokens:
            return True
        return mid_cut(chunk[0], punct_ids) is None   # else merge even if truncated
    # The document's last sentence would be left alone: absorb it when it fits
    # and could not be cut at a clause mark by itself.
    return (i + 2 == len(sentences) and length + nxt <= max_num_tokens
            and not clause_cuts(sentences[i + 1], clause_ids, punct_ids))


def _emit_pair(chunk: list[Sentence], cut: Optional[int], target: int, max_num_tokens: int,
               pair_task: str, rng: random.Random, random_doc: Optional[RandomDoc], inc: Inc,
               pairs: list[Pair]) -> int:
    """Append one pair for ``chunk``; returns how many sentences go back (NSP).

    ``cut`` (a one-sentence chunk only): the token offset where its A ends and
    its B begins, when A and B come from that sentence.
    """
    k = len(chunk)
    a_end = randint(rng, 1, k - 1) if k >= 2 else 1
    if cut is not None:
        ids, units = chunk[0]
        ua = bisect_right(list(accumulate(units)), cut)   # units before the cut
        first = (ids[:cut], units[:ua])
        second = (ids[cut:], units[ua:])
    else:
        first = _concat(chunk[:a_end])
        second = _concat(chunk[a_end:])
    put_back = 0
    label = 0
    if pair_task == "sop":
        (a, af), (b, bf) = first, second
        if rng.random() < 0.5:
            a, af, b, bf = b, bf, a, af
            label = 1
            inc("pairs:sop:swapped")
        else:
            inc("pairs:sop:in_order")
    else:  # nsp
        other: list[Sentence] = []
        if rng.random() < 0.5:
            if random_doc is not None:
                other = _as_sentences(random_doc(rng))
            if not other:
                inc("pairs:nsp:no_negative")
        if other:
            # A is the first a_end sentences: the whole sentence when k == 1.
            a, af = first if cut is None else (list(chunk[0][0]), list(chunk[0][1]))
            target_b = target - len(a)
            b, bf = [], []
            for ids, units in other[randbelow(rng, len(other)):]:
                b += ids
                bf += units
                if len(b) >= target_b:
                    break
            label = 1
            put_back = k - a_end
            inc("pairs:nsp:random_next")
        else:
            (a, af), (b, bf) = first, second
            inc("pairs:nsp:actual_next")
    a, af, b2, bf2, truncated = truncate_pair(a, af, b, bf, max_num_tokens, rng)
    if truncated:
        inc("pairs:truncated")
    pairs.append(Pair(a, af, b2, bf2, label))
    return put_back
