"""The cleaning stage: normalise a document, then filter it.

``Cleaner`` is what a Beam DoFn wraps: construct it with a ``CleanConfig`` at
pipeline-build time (it pickles: no OpenCC object is held until ``setup``),
call ``setup()`` in ``DoFn.setup`` to load OpenCC once per worker, and
``clean(doc, inc)`` per element.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

from corpusflow.clean import filters, normalize
from corpusflow.counters import Inc, register
from corpusflow.document import Document, Reject
from corpusflow.pii.step import REASON as PII_REASON, apply_pii, redacted_excerpt
from corpusflow.quality.step import REASON as QUALITY_REASON, apply_quality

STAGE = "clean"

COUNTERS = register(
    ["clean:kept", "clean:rejected:clean_error"]
    + [f"clean:filtered:{r}" for r in filters.FILTER_REASONS])


@dataclasses.dataclass
class CleanConfig:
    """Cleaning options; the defaults are the production settings."""

    t2s: bool = True                      # convert Traditional to Simplified
    opencc_config: str = "t2s"            # OpenCC config used when t2s is on
    min_chars: int = 20                   # too_short: non-whitespace chars
    max_chars: int = 1_000_000            # too_long: chars after cleaning
    min_cjk_ratio: float = 0.3            # low_cjk: CJK ideographs / non-whitespace chars
    max_repeated_line_ratio: float = 0.3  # repeated_lines: duplicate lines / lines
    max_replacement_ratio: float = 0.01   # bad_encoding: U+FFFD / chars of the raw text
    pii: str = "redact"                   # corpusflow.pii.step: redact | tag | drop_doc | off
    quality_signals: bool = True          # meta.quality signals (corpusflow.quality)
    quality_model: Optional[str] = None   # model directory: meta.quality.score
    min_quality: Optional[float] = None   # low_quality: score below this (needs quality_model)


class Cleaner:
    """Normalises title and text of a ``Document`` and applies the filters."""

    def __init__(self, config: Optional[CleanConfig] = None) -> None:
        self.config = config or CleanConfig()
        self._converter: Any = None
        self._quality_model: Any = None

    def setup(self) -> None:
        """Load OpenCC (when ``config.t2s``); calling it again does nothing."""
        if self.config.t2s and self._converter is None:
            self._converter = normalize.load_t2s(self.config.opencc_config)
        if self.config.quality_model and self._quality_model is None:
            from corpusflow.quality.model import load_model
            self._quality_model = load_model(self.config.quality_model)

    def __getstate__(self) -> dict:
        # The OpenCC object is a native handle and does not pickle; a copy
        # loads its own in setup().
        state = self.__dict__.copy()
        state["_converter"] = None
        state["_quality_model"] = None  # loaded again in setup()
        return state

    def clean(self, doc: Document, inc: Inc) -> Union[Document, Reject]:
        """Return the cleaned document, or a ``Reject`` (filtered, or clean_error).

        Normalisation counters are only counted when every rule succeeded, so a
        document that fails counts once, as ``clean:rejected:clean_error``.
        """
        if ((self.config.t2s and self._converter is None)
                or (self.config.quality_model and self._quality_model is None)):
            self.setup()  # direct (non-Beam) use without setup()
        cfg = self.config
        pending: list[str] = []
        try:
            text = normalize.normalize(doc.text, _Collect(pending), self._converter)
            title = normalize.normalize_title(doc.title, self._converter)
            keep, reason = filters.apply_filters(
                text, doc.text, min_chars=cfg.min_chars, max_chars=cfg.max_chars,
                min_cjk_ratio=cfg.min_cjk_ratio,
                max_repeated_line_ratio=cfg.max_repeated_line_ratio,
                max_replacement_ratio=cfg.max_replacement_ratio)
            meta: Optional[dict] = dict(doc.meta)
            if keep:
                # PII, then quality on the text as it will be kept (see
                # corpusflow.pii.step, corpusflow.quality.step).
                post = apply_pii(cfg.pii, title, text, meta, _Collect(pending))
                if post is None:
                    keep, reason = False, PII_REASON
                else:
                    title, text, meta = post
                    meta = apply_quality(text, meta, _Collect(pending), signals=cfg.quality_signals,
                                         model=self._quality_model, min_quality=cfg.min_quality)
                    if meta is None:
                        keep, reason = False, QUALITY_REASON
        except Exception as e:  # noqa: BLE001 - one bad document must not fail a job
            inc("clean:rejected:clean_error")
            return _error_reject(doc, e)
        for name in pending:
            inc(name)
        if not keep:
            inc(f"clean:filtered:{reason}")
            # The excerpt is of the input: that is what one needs to see to
            # judge the filter (an empty_after_clean text has nothing left).
            rej = Reject.for_doc(doc, stage=STAGE, reason=reason, kind="filtered")
            if reason == PII_REASON:  # rejects/ must not keep what the document was dropped for
                rej.excerpt = redacted_excerpt(rej.excerpt)
            return rej
        inc("clean:kept")
        return dataclasses.replace(doc, title=title, text=text, meta=meta)


def _error_reject(doc: Document, e: Exception) -> Reject:
    detail = f"{type(e).__name__}: {e}"[:200]
    if isinstance(doc.text, str):
        return Reject.for_doc(doc, stage=STAGE, reason="clean_error", kind="rejected",
                              detail=detail)
    # A malformed record (text not a str) must still become a Reject, not a crash.
    meta = doc.meta if isinstance(doc.meta, dict) else {}
    return Reject(stage=STAGE, reason="clean_error", kind="rejected", id=doc.id,
                  file=meta.get("file"), line=meta.get("line"), detail=detail)


class _Collect:
    """An ``Inc`` that remembers names, to count them only on success."""

    __slots__ = ("names",)

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def __call__(self, name: str, n: int = 1) -> None:
        self.names.extend([name] * n)
