"""The segmenter interface every backend (jieba, LTP, ...) implements.

A segmenter turns a batch of sentences into word spans: for each sentence a list
of ``(start, end)`` character offsets, in order, non-overlapping and covering the
whole sentence (``spans[0][0] == 0``, ``spans[-1][1] == len(sentence)``, each
span starts where the previous ended). Whitespace may form its own span; the
tokenizer drops it. Backends that fail on one sentence fall back to one span per
character for that sentence and report it through ``fallbacks``.

Everything a backend may do is declared here with a default, so callers never
probe for abilities:

- lifecycle: ``validate`` (driver, before a pipeline), ``setup`` (once per
  worker), ``teardown``, ``check`` (the driver's whole pre-flight), ``identity``;
- segmentation: ``_segment_batch`` (required), ``segment_batch``/``segment``;
- fast paths (optional): ``word_starts`` (one document's word starts without
  span tuples) and ``block_word_starts`` (a block of documents in one call);
- the stage's one call: ``starts_for_block``, which takes the fast path where
  the backend offers it and spans elsewhere, with the same output either way.
"""

from __future__ import annotations

import abc
from itertools import chain
from time import perf_counter, thread_time
from typing import Any, Callable, MutableMapping, Optional, Sequence

import numpy as np

from corpusflow.counters import Inc, null_inc, register

Span = tuple[int, int]

FALLBACK_COUNTER = "segment:fallback:sentence"
# Counted when a backend's spans are malformed (the name predates this module).
INVALID_SPANS_COUNTER = "instances:invalid_spans"
COUNTERS = register([FALLBACK_COUNTER, INVALID_SPANS_COUNTER])


class Segmenter(abc.ABC):
    """Base class: subclasses implement ``_segment_batch`` and ``identity``,
    and override the other methods where they have something to add."""

    name: str = "base"

    def __init__(self) -> None:
        # Sentences that fell back to character units (segmenter failure).
        self.fallbacks = 0

    # -- lifecycle ---------------------------------------------------------

    def validate(self) -> None:
        """Check options and files before a pipeline starts (in the driver);
        raise ValueError, FileNotFoundError or ImportError with one line."""

    def setup(self) -> None:
        """Load what segmentation needs, once per worker (idempotent)."""

    def teardown(self) -> None:
        """Release what ``setup`` loaded."""

    def check(self) -> dict:
        """The driver's pre-flight: ``validate``, prove the backend loads, and
        return ``identity()``. Loads with ``setup`` here; a backend whose model is
        costly to keep in the driver overrides this (its ``validate`` proves the
        load and releases it)."""
        self.validate()
        self.setup()
        return self.identity()

    @abc.abstractmethod
    def identity(self) -> dict:
        """``{"name", "version", "model_hash"}`` for the manifest and the stage hash."""

    # -- segmentation ------------------------------------------------------

    @abc.abstractmethod
    def _segment_batch(self, sentences: Sequence[str]) -> list[list[Span]]:
        """Segment a batch; may raise for a sentence the backend cannot handle."""

    def segment_batch(self, sentences: Sequence[str]) -> list[list[Span]]:
        """Segment a batch; a failing batch is retried sentence by sentence and a
        failing sentence becomes character units, so one bad sentence never
        fails a job."""
        try:
            out = self._segment_batch(sentences)
        except Exception:  # noqa: BLE001 - any backend failure falls back, counted
            out = []
            for s in sentences:
                try:
                    out.extend(self._segment_batch([s]))
                except Exception:  # noqa: BLE001
                    self.fallbacks += 1
                    out.append(char_spans(s))
        return out

    def segment(self, sentence: str) -> list[Span]:
        return self.segment_batch([sentence])[0]

    def word_starts(self, sentences: Sequence[str]) -> Optional[np.ndarray]:
        """Word starts of ``"\\n".join(sentences)`` (as ``word_starts_from_spans``
        gives them, end offset included) from one call, without span tuples.
        ``None``: not offered, or declined for this document (use spans)."""
        return None

    def block_word_starts(self, docs: Sequence[Sequence[str]]) -> list[Optional[np.ndarray]]:
        """``word_starts`` for each document of a block (``None`` where declined);
        backends that batch across documents override it."""
        return [self.word_starts(sentences) for sentences in docs]

    def starts_for_block(self, docs: Sequence[Sequence[str]], inc: Inc = null_inc,
                         timing: Optional[MutableMapping[str, Any]] = None) -> list[np.ndarray]:
        """Word starts of every document of a block (each a list of sentences):
        the fast path (``block_word_starts``) where the backend gives them, and
        one ``segment_batch`` call over the sentences of all other documents.
        A sentence's words do not depend on its batch or path, so neither does
        the output.

        ``timing`` (optional) gets ``cpu_seconds`` (this thread's CPU: not a
        runner's other threads, nor a neural model's intra-op threads, which
        only ``wall_seconds`` shows), ``wall_seconds``
        and ``calls`` added for the backend calls (a fast-path call that
        declined every document is not counted as a call); new fallbacks are
        counted as ``segment:fallback:sentence``.
        """
        fast = self._timed(self.block_word_starts, docs, inc, timing)
        rest = [i for i, st in enumerate(fast) if st is None]
        out: list[Optional[np.ndarray]] = list(fast)
        if timing is not None and len(rest) == len(docs) and docs:
            timing["calls"] -= 1
        if rest:
            flat = self._timed(self.segment_batch,
                               [s for i in rest for s in docs[i]], inc, timing)
            pos = 0
            for i in rest:
                n = len(docs[i])
                out[i] = word_starts_from_spans(docs[i], flat[pos:pos + n], inc)
                pos += n
        return out  # type: ignore[return-value]

    def _timed(self, fn: Callable[[Any], Any], arg: Any, inc: Inc,
               timing: Optional[MutableMapping[str, Any]]) -> Any:
        """Call the backend; account its time and new fallbacks."""
        before = self.fallbacks
        if timing is None:
            out = fn(arg)
        else:
            t0, w0 = thread_time(), perf_counter()
            out = fn(arg)
            timing["cpu_seconds"] += thread_time() - t0
            timing["wall_seconds"] += perf_counter() - w0
            timing["calls"] += 1
        if self.fallbacks > before:
            inc(FALLBACK_COUNTER, self.fallbacks - before)
        return out


def char_spans(sentence: str) -> list[Span]:
    """One span per character: the fallback when a segmenter cannot help."""
    return [(i, i + 1) for i in range(len(sentence))]


def words_to_spans(sentence: str, words: Sequence[str]) -> list[Span]:
    """Turn a backend's word list into spans over ``sentence``.

    Backends may drop or alter characters (whitespace, normalisation); anything
    not matched exactly is covered by single-character spans so the result always
    satisfies the interface's coverage rule.
    """
    spans: list[Span] = []
    pos = 0
    n = len(sentence)
    for w in words:
        if not w:
            continue
        idx = sentence.find(w, pos)
        if idx < 0:
            continue
        while pos < idx:  # characters the backend skipped
            spans.append((pos, pos + 1))
            pos += 1
        spans.append((idx, idx + len(w)))
        pos = idx + len(w)
    while pos < n:
        spans.append((pos, pos + 1))
        pos += 1
    return spans


def check_spans(sentence: str, spans: Sequence[Span]) -> bool:
    """True when ``spans`` satisfy the interface's coverage rule for ``sentence``."""
    pos = 0
    for a, b in spans:
        if a != pos or b <= a:
            return False
        pos = b
    return pos == len(sentence)


def word_starts_from_spans(sentences: Sequence[str], spans: Sequence[Sequence[Span]],
                           inc: Inc = null_inc) -> np.ndarray:
    """Offsets in ``"\\n".join(sentences)`` where a word starts, separators
    included (each "\\n" is a word of its own), and its end offset.

    Only the start offsets define the words, so only they are checked: a
    sentence with a start outside ``[0, len]`` or a malformed span falls
    back to one word per character (counted ``instances:invalid_spans``).
    Vectorised over the whole document.
    """
    n_sent = len(sentences)
    lens = np.fromiter(map(len, sentences), dtype=np.int64, count=n_sent)
    counts = np.fromiter(map(len, spans), dtype=np.int64, count=n_sent)
    sent_off = np.zeros(n_sent, dtype=np.int64)
    np.cumsum(lens[:-1] + 1, out=sent_off[1:])
    try:
        flat = np.fromiter(chain.from_iterable(chain.from_iterable(spans)), dtype=np.int64)
    except (TypeError, ValueError):
        flat = np.zeros(0, dtype=np.int64)
    word_sent = np.repeat(np.arange(n_sent), counts)
    if flat.size != 2 * word_sent.size:   # some span is not a (start, end) pair
        bad = np.ones(n_sent, dtype=bool)
    else:
        a = flat[0::2]
        ok = (a >= 0) & (a <= lens[word_sent])
        bad = np.zeros(n_sent, dtype=bool) if ok.all() else np.bincount(
            word_sent[~ok], minlength=n_sent) > 0
    bad |= (counts == 0) & (lens > 0)       # no words in a non-empty sentence
    if not bad.any():
        return np.concatenate((sent_off + lens, a + sent_off[word_sent]))
    inc(INVALID_SPANS_COUNTER, int(bad.sum()))
    parts = [sent_off + lens]               # the separators
    if flat.size == 2 * word_sent.size:
        keep = ~bad[word_sent]
        parts.append(a[keep] + sent_off[word_sent[keep]])
    for k in np.flatnonzero(bad).tolist():  # one word per character
        parts.append(np.arange(sent_off[k], sent_off[k] + lens[k]))
    return np.concatenate(parts)
