"""The quality step of the clean stage: ``meta.quality`` and ``--min_quality``.

``meta.quality`` holds the signals (``corpusflow.quality.signals``) and, with
``--quality_model``, ``score``; a score below ``--min_quality`` filters the
document with reason ``low_quality``.
"""

from __future__ import annotations

from typing import Any, Optional

from corpusflow.counters import Inc, register
from corpusflow.quality.signals import quality_signals

REASON = "low_quality"
COUNTERS = register([f"clean:filtered:{REASON}"])


def apply_quality(text: str, meta: dict[str, Any], inc: Inc, *, signals: bool = True, model: Any = None,
                  min_quality: Optional[float] = None) -> Optional[dict[str, Any]]:
    """The document's new meta, or None when its score is below ``min_quality``."""
    if not signals and model is None:
        return meta
    q: dict[str, Any] = quality_signals(text) if signals else {}
    if model is not None:
        q["score"] = model.score(text)
        if min_quality is not None and q["score"] < min_quality:
            return None
    meta = dict(meta)
    meta["quality"] = q
    return meta


def score_bucket(score: float) -> str:
    """Histogram bucket of a score: its lower tenth, ``"0.0"`` .. ``"0.9"``."""
    return f"{min(9, int(score * 10)) / 10:.1f}"


def add_stats(data: dict, source: str, meta: dict[str, Any]) -> None:
    """Add a kept document's score to stage stats: ``quality_score_hist[source][bucket]``
    (integer counts only, so merged stats do not depend on bundle order)."""
    q = meta.get("quality")
    if not q or "score" not in q:
        return
    h = data.setdefault("quality_score_hist", {}).setdefault(source, {})
    b = score_bucket(q["score"])
    h[b] = h.get(b, 0) + 1
