"""The PII step of the clean stage: ``--pii redact|tag|drop_doc|off``.

Runs on a document that passed the filters (its normalised title and text).
Counters: ``clean:pii:<type>`` per identifier found, ``clean:pii:docs`` per
document with at least one; ``drop_doc`` filters with reason ``pii``.
"""

from __future__ import annotations

from typing import Any, Optional

from corpusflow.counters import Inc, register
from corpusflow.pii.detect import TYPES, find_pii, redact

MODES: tuple[str, ...] = ("redact", "tag", "drop_doc", "off")
DEFAULT_MODE = "redact"
REASON = "pii"

COUNTERS = register([f"clean:pii:{t}" for t in TYPES] + ["clean:pii:docs", f"clean:filtered:{REASON}"])


def apply_pii(mode: str, title: str, text: str, meta: dict[str, Any],
              inc: Inc) -> Optional[tuple[str, str, dict[str, Any]]]:
    """``(title, text, meta)`` after the PII step, or None to drop the document.

    ``redact`` replaces every span with its placeholder in title and text;
    ``tag`` keeps the text and adds ``meta["pii"]``: ``[{"field", "start",
    "end", "type"}]`` in character offsets of the cleaned field; ``drop_doc``
    returns None when anything was found (the caller filters it as ``pii``).
    """
    if mode == "off":
        return title, text, meta
    if mode not in MODES:
        raise ValueError(f"pii mode must be one of {', '.join(MODES)}, not {mode!r}")
    t_spans = find_pii(title) if title else []
    x_spans = find_pii(text)
    if not t_spans and not x_spans:
        return title, text, meta
    for s in t_spans + x_spans:
        inc(f"clean:pii:{s.type}")
    inc("clean:pii:docs")
    if mode == "drop_doc":
        return None
    if mode == "tag":
        meta = dict(meta)
        meta["pii"] = ([{"field": "title", "start": s.start, "end": s.end, "type": s.type} for s in t_spans]
                       + [{"field": "text", "start": s.start, "end": s.end, "type": s.type} for s in x_spans])
        return title, text, meta
    return redact(title, t_spans), redact(text, x_spans), meta


def redacted_excerpt(excerpt: str) -> str:
    """A reject excerpt with its identifiers replaced by placeholders."""
    return redact(excerpt, find_pii(excerpt))


def stats_inc(data: dict, inc: Inc) -> Inc:
    """``inc`` that also adds ``clean:pii:<name>`` counts to ``data["pii"][name]`` (stats.json)."""
    pii = data.setdefault("pii", {})

    def tee(name: str, n: int = 1) -> None:
        inc(name, n)
        if name.startswith("clean:pii:"):
            key = name[len("clean:pii:"):]
            pii[key] = pii.get(key, 0) + n
    return tee
