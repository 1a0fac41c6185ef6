"""Documents (sentences + segmenter word spans) to pretraining instances.

``InstanceBuilder.prepare`` tokenizes a document once and maps the segmenter's
word spans onto tokens (masking units, see ``masking``); ``build`` then makes one
pass (``dupe_index``) of instances: packing and pairs (``pairs``), masking,
and a sort key. An instance whose real tokens (not [CLS]/[SEP]) are more than
half punctuation or symbols (``punct.is_punct_token``) is dropped before
masking, counted ``instances:dropped:mostly_punct``; every instance kept has
exactly its masking budget of predictions (``masking.mask_sequence``). Every pass has its own RNG seeded from ``(seed, doc id, pass)``
through ``stable_hash64``, so any pass of any document can be rebuilt alone,
on any worker, in any order.
"""

from __future__ import annotations

import dataclasses
import random
from itertools import chain
from typing import Any, Optional, Sequence

import numpy as np

from corpusflow.config import Config, ConfigError, option
from corpusflow.counters import Inc, null_inc, register
from corpusflow.document import stable_hash64
from corpusflow.pretrain import masking, punct
from corpusflow.pretrain.masking import DECISIONS, NGRAM_DISTS, STRATEGIES
from corpusflow.pretrain.pairs import PAIR_TASKS, RandomDoc, Sentence, make_pairs
from corpusflow.segment.base import Span, word_starts_from_spans
from corpusflow.tokenize import DEFAULT_VOCAB

COUNTERS = register([
    "instances:prepared",
    "instances:rejected:too_short_for_instance",
    "instances:long_sentence_split",
    "instances:invalid_spans",
    "instances:built",
    "instances:tokens",
    "instances:masked_tokens",
    "instances:masked_units",
    "instances:dropped:mostly_punct",
    "mask:fallback:unaligned_word",
    "mask:partial_word",
])

REJECT_TOO_SHORT = "too_short_for_instance"
MIN_DOC_TOKENS = 2


MAX_SEQ_LENGTH = 512  # BERT's position embeddings


@dataclasses.dataclass(frozen=True)
class InstanceConfig(Config):
    """Every option of the instances stage: flags, defaults, bounds and hashing in one place.

    ``to_json()`` (the hashed fields) is what the config hash and the manifest
    record; the vocab file is hashed by its content, not its path.
    """

    GROUP = "corpusflow: pretraining instances (stages instances, tfrecords)"

    vocab_file: str = option(
        DEFAULT_VOCAB, "WordPiece vocab.txt (default: the bundled standard Chinese BERT vocab, "
        "21,128 tokens); 'none' stops after dedup.", hashed=False, path=True, manifest=True)
    do_lower_case: bool = option(True, "Lower-case and strip accents before WordPiece (as "
                                       "BERT-Chinese).", kind="bool")
    max_seq_length: int = option(128, "Tokens per instance, [CLS] and [SEP]s included "
                                      f"(8..{MAX_SEQ_LENGTH}).", lo=8)
    allow_long_sequences: bool = option(False, f"Allow --max_seq_length above {MAX_SEQ_LENGTH}.",
                                        kind="flag", hashed=False)
    max_predictions_per_seq: int = option(20, "Most masked positions per instance "
                                              "(1..max_seq_length).", lo=1)
    masked_lm_prob: float = option(0.15, "Share of tokens masked (0 < p <= 1).", lo=0.0, hi=1.0,
                                   lo_open=True)
    short_seq_prob: float = option(0.1, "Share of chunks packed to a random shorter length "
                                        "(0..1).", lo=0.0, hi=1.0)
    dupe_factor: int = option(2, "Passes over the corpus, each with different masks (1..1000).",
                              lo=1, hi=1000)
    masking: str = option("wwm", "Mask single tokens, whole words, or n-grams of whole words.",
                          choices=STRATEGIES)
    ngram: int = option(3, "Longest n-gram (in words) of --masking ngram (1..10).", lo=1, hi=10)
    ngram_dist: str = option("albert", "n-gram length distribution: ALBERT's 1/n or SpanBERT's "
                                       "geometric.", choices=NGRAM_DISTS)
    mask_decision: str = option("per_word", "80/10/10 [MASK]/random/keep drawn once per word or "
                                            "per token.", choices=DECISIONS)
    pair_task: str = option("sop", "Sentence-order (ALBERT), next-sentence (BERT) or no pair "
                                   "task.", choices=PAIR_TASKS)
    nsp_window: int = option(64, "NSP negatives come from the last N documents of the same docs "
                                 "shard.", lo=1)
    random_seed: int = option(12345, "Seed of every random draw (with the document id and the "
                                     "pass).", lo=0)
    token_boundary: bool = option(False, "Write ALBERT's token_boundary feature.", kind="flag")

    def __post_init__(self) -> None:
        try:
            self.validate()
        except ConfigError as e:
            raise ValueError(str(e)) from None

    def check(self) -> None:
        if self.max_seq_length > MAX_SEQ_LENGTH and not self.allow_long_sequences:
            raise ConfigError(f"--max_seq_length {self.max_seq_length} is above {MAX_SEQ_LENGTH} "
                              "(BERT's position embeddings); pass --allow_long_sequences if you "
                              "mean it")
        if self.max_predictions_per_seq > self.max_seq_length:
            raise ConfigError(f"--max_predictions_per_seq must be in [1, --max_seq_length="
                              f"{self.max_seq_length}], got {self.max_predictions_per_seq}")
        self.mask_config()  # the masking module's own checks

    def mask_config(self) -> masking.MaskConfig:
        return masking.MaskConfig(
            masked_lm_prob=self.masked_lm_prob,
            max_predictions_per_seq=self.max_predictions_per_seq,
            masking=self.masking, ngram=self.ngram, ngram_dist=self.ngram_dist,
            mask_decision=self.mask_decision)


@dataclasses.dataclass
class PreparedDoc:
    """A tokenized document, reused by every pass.

    ``sentences``: per sentence ``(token ids, unit lengths)``; a unit is one
    segmenter word's tokens, or one token of an unaligned word.
    """

    doc_id: str
    sentences: list[Sentence]
    num_tokens: int
    reject_reason: Optional[str] = None   # REJECT_TOO_SHORT: caller rejects the doc


@dataclasses.dataclass
class Instance:
    input_ids: list[int]
    segment_ids: list[int]
    masked_lm_positions: list[int]
    masked_lm_ids: list[int]          # weights are implicit: 1.0 per position
    next_sentence_label: int
    token_boundary: list[int]         # filled when config.token_boundary, else []
    sort_key: int                     # seeded 64-bit shuffle key for the writer


class InstanceBuilder:
    """Turns segmented documents into ``Instance``s for one ``InstanceConfig``."""

    def __init__(self, config: InstanceConfig, tokenizer: Any) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.mask_cfg = config.mask_config()
        self.sampler = masking.NgramSampler(config.ngram, config.ngram_dist)
        self.replace_ids = masking.replacement_ids(tokenizer.vocab)
        if not self.replace_ids:
            raise ValueError("vocab has no ids usable as random replacements")
        self.cls_id = tokenizer.vocab["[CLS]"]
        self.sep_id = tokenizer.vocab["[SEP]"]
        self.mask_id = tokenizer.vocab["[MASK]"]
        self.punct_ids = punct.punct_ids(tokenizer.vocab)
        self.clause_ids = punct.clause_ids(tokenizer.vocab)
        # Longest sentence piece: must fit [CLS] A [SEP] B [SEP].
        self.max_piece = config.max_seq_length - 3

    # -- prepare: once per document --------------------------------------------

    def prepare(self, doc_id: str, sentences: Sequence[str],
                spans: Optional[Sequence[Sequence[Span]]], inc: Inc = null_inc, *,
                word_starts: Optional[np.ndarray] = None) -> PreparedDoc:
        """Tokenize ``sentences`` and turn word ``spans`` into masking units.

        The tokens of one word form one unit; a token crossing a word boundary
        makes every word it touches unaligned, and those words' tokens become
        one-token units (counted ``mask:fallback:unaligned_word`` per word).
        Sentences without tokens are dropped; sentences longer than
        ``max_seq_length - 3`` tokens are cut, at word starts where possible.
        A document with fewer than 2 tokens gets ``reject_reason``. Words are
        defined by their start offsets (see ``word_starts_from_spans`` for bad spans).

        ``word_starts`` may replace ``spans``: the same start offsets as
        ``word_starts_from_spans`` returns, computed by the segmenter for the whole
        document at once (``JiebaRsSegmenter.word_starts``), which skips a
        Python tuple per word.
        """
        if word_starts is None:
            if spans is None or len(sentences) != len(spans):
                raise ValueError("sentences and spans differ in length")
        inc("instances:prepared")
        # One tokenizer call for the whole document (per-call overhead is
        # mostly fixed); "\n" separates sentences and never joins a word.
        text = "\n".join(sentences)
        if word_starts is None:
            word_starts = self.word_starts_from_spans(sentences, spans, inc)
        ids_arr, st, en = _tokenize_arrays(self.tokenizer, text)
        total = len(ids_arr)
        if total < MIN_DOC_TOKENS:
            return self._too_short(doc_id, inc)
        ids = ids_arr.tolist()
        is_start = np.zeros(len(text) + 1, dtype=np.int32)
        is_start[word_starts] = 1
        wid = np.cumsum(is_start) - 1          # char -> word index
        ws = wid[st]
        we = wid[en - 1]
        # A token starts a unit when it starts a new word, or when its word is
        # unaligned (then every token of the word is a unit).
        unit_start = np.empty(total, dtype=bool)
        unit_start[0] = True
        np.not_equal(ws[1:], ws[:-1], out=unit_start[1:])
        crossing = ws != we
        if crossing.any():
            bad = np.zeros(int(wid[-1]) + 2, dtype=bool)
            for a, b in zip(ws[crossing].tolist(), we[crossing].tolist()):
                bad[a:b + 1] = True
            inc("mask:fallback:unaligned_word", int(bad.sum()))
            unit_start |= bad[ws]
        ustarts = np.flatnonzero(unit_start)
        ulens = np.diff(np.append(ustarts, total))
        # Sentence token ranges, and the unit range of each (every sentence
        # starts a new word, so units never cross sentences).
        sent_starts = np.zeros(len(sentences), dtype=np.int64)
        np.cumsum([len(x) + 1 for x in sentences[:-1]], out=sent_starts[1:])
        tok_sent = np.searchsorted(sent_starts, st, side="right") - 1
        tb = np.searchsorted(tok_sent, np.arange(len(sentences) + 1)).tolist()
        ub = np.searchsorted(ustarts, tb).tolist()
        ulens_l = ulens.tolist()
        out: list[Sentence] = []
        for k in range(len(sentences)):
            a, b = tb[k], tb[k + 1]
            if a == b:
                continue
            units = ulens_l[ub[k]:ub[k + 1]]
            if b - a > self.max_piece:
                inc("instances:long_sentence_split")
                out.extend(_split_long(ids[a:b], units, self.max_piece))
            else:
                out.append((ids[a:b], units))
        return PreparedDoc(doc_id, out, total)

    # Shared with the segmenters' block path (one definition: corpusflow.segment.base).
    word_starts_from_spans = staticmethod(word_starts_from_spans)

    @staticmethod
    def usable(prepared: PreparedDoc) -> bool:
        """False when the caller should reject the document (``reject_reason``)."""
        return prepared.reject_reason is None and bool(prepared.sentences)

    def _too_short(self, doc_id: str, inc: Inc) -> PreparedDoc:
        inc("instances:rejected:too_short_for_instance")
        return PreparedDoc(doc_id, [], 0, REJECT_TOO_SHORT)

    # -- build: once per (document, pass) --------------------------------------

    def rng_for(self, doc_id: str, dupe_index: int) -> random.Random:
        return random.Random(stable_hash64(f"{self.config.random_seed}\x1f{doc_id}\x1f{dupe_index}"))

    def build(self, prepared: PreparedDoc, dupe_index: int, inc: Inc = null_inc,
              random_doc: Optional[RandomDoc] = None) -> list[Instance]:
        """Instances of one pass over a prepared document (empty if rejected)."""
        if prepared.reject_reason or not prepared.sentences:
            return []
        cfg = self.config
        rng = self.rng_for(prepared.doc_id, dupe_index)
        pairs = make_pairs(prepared.sentences, max_seq_length=cfg.max_seq_length,
                           short_seq_prob=cfg.short_seq_prob, pair_task=cfg.pair_task,
                           rng=rng, random_doc=random_doc, inc=inc,
                           clause_ids=self.clause_ids, punct_ids=self.punct_ids)
        out: list[Instance] = []
        cls_id, sep_id = self.cls_id, self.sep_id
        is_punct = self.punct_ids.__contains__
        n_tokens = n_masked = n_units = partial = dropped = 0
        key_prefix = f"sort\x1f{cfg.random_seed}\x1f{prepared.doc_id}\x1f{dupe_index}\x1f"
        want_tb = cfg.token_boundary
        for k, p in enumerate(pairs):
            la = len(p.a_ids)
            n_punct = sum(map(is_punct, p.a_ids))
            if p.b_ids is not None:
                n_punct += sum(map(is_punct, p.b_ids))
            if 2 * n_punct > la + len(p.b_ids or ()):
                dropped += 1
                continue
            ids = [cls_id] + p.a_ids + [sep_id]
            segments = [(1, p.a_units)]
            if p.b_ids is not None:
                ids += p.b_ids
                ids.append(sep_id)
                segments.append((la + 2, p.b_units))  # type: ignore[arg-type]
                seg = [0] * (la + 2) + [1] * (len(p.b_ids) + 1)
            else:
                seg = [0] * (la + 2)
            m = masking.mask_sequence(ids, segments, self.mask_cfg, rng, self.mask_id,
                                      self.replace_ids, self.sampler, with_boundary=want_tb)
            out.append(Instance(
                input_ids=m.input_ids, segment_ids=seg, masked_lm_positions=m.positions,
                masked_lm_ids=m.labels, next_sentence_label=p.label,
                token_boundary=m.token_boundary,
                sort_key=stable_hash64(key_prefix + str(k))))
            n_tokens += len(ids)
            n_masked += len(m.positions)
            n_units += m.units
            partial += m.partial
        if dropped:
            inc("instances:dropped:mostly_punct", dropped)
        if out:
            inc("instances:built", len(out))
            inc("instances:tokens", n_tokens)
            inc("instances:masked_tokens", n_masked)
            inc("instances:masked_units", n_units)
            if partial:
                inc("mask:partial_word", partial)
        return out

    def build_all(self, prepared: PreparedDoc, inc: Inc = null_inc,
                  random_doc: Optional[RandomDoc] = None) -> list[Instance]:
        """All ``dupe_factor`` passes (convenience for tests and local runs)."""
        out: list[Instance] = []
        for d in range(self.config.dupe_factor):
            out.extend(self.build(prepared, d, inc, random_doc))
        return out


def _split_long(ids: list[int], units: list[int], limit: int) -> list[Sentence]:
    """Cut a sentence into pieces of at most ``limit`` tokens.

    Pieces end at a word boundary when that keeps them at least half full;
    otherwise (a very long word) the word is cut and each part is a unit.
    """
    pieces: list[Sentence] = []
    cur_units: list[int] = []
    cur = 0          # tokens in the current piece
    pos = 0          # ids index where the current piece starts
    for u in units:
        while cur + u > limit:
            if cur >= limit // 2:
                pieces.append((ids[pos:pos + cur], cur_units))
            else:  # cut the word: fill this piece, the rest stays a unit
                take = limit - cur
                cur_units.append(take)
                cur += take
                u -= take
                pieces.append((ids[pos:pos + cur], cur_units))
            pos += cur
            cur = 0
            cur_units = []
        cur_units.append(u)
        cur += u
    if cur:
        pieces.append((ids[pos:pos + cur], cur_units))
    return pieces


def _tokenize_arrays(tokenizer: Any, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tokenizer's numpy fast path when it has one (``FullTokenizer``),
    else ``tokenize_with_offsets`` converted."""
    fast = getattr(tokenizer, "tokenize_arrays", None)
    if fast is not None:
        return fast(text)
    ids, starts, ends = tokenizer.tokenize_with_offsets(text)
    return (np.asarray(ids, dtype=np.int64), np.asarray(starts, dtype=np.int64),
            np.asarray(ends, dtype=np.int64))
