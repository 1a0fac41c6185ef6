"""The segmenter interface every backend (jieba, LTP, ...) implements.

A segmenter turns a batch of sentences into word spans: for each sentence a list
of ``(start, end)`` character offsets, in order, non-overlapping and covering the
whole sentence (``spans[0][0] == 0``, ``spans[-1][1] == len(sentence)``, each
span starts where the previous ended). Whitespace may form its own span; the
tokenizer drops it. Backends that fail on one sentence fall back to one span per
character for that sentence and report it through ``fallbacks``.
"""

from __future__ import annotations

import abc
from typing import Sequence

Span = tuple[int, int]


class Segmenter(abc.ABC):
    """Base class: subclasses implement ``_segment_batch`` and ``identity``."""

    name: str = "base"

    def __init__(self) -> None:
        # Sentences that fell back to character units (segmenter failure).
        self.fallbacks = 0

    @abc.abstractmethod
    def _segment_batch(self, sentences: Sequence[str]) -> list[list[Span]]:
        """Segment a batch; may raise for a sentence the backend cannot handle."""

    @abc.abstractmethod
    def identity(self) -> dict:
        """``{"name", "version", "model_hash"}`` for the manifest."""

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
