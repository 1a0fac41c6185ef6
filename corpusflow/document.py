"""The record types that flow between stages.

One ``Document`` type from reading to dedup; rejected and dropped records become
``Reject`` records that carry their stage, reason and where they came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Optional

SOURCES = ("wiki", "baike", "news", "text")

# How much of a rejected record is copied into rejects/ (the rest is not kept:
# a 50 MB line must not turn into a 50 MB reject record).
EXCERPT_CHARS = 200


@dataclasses.dataclass
class Document:
    """A document: stable id, source, title, text and provenance metadata.

    ``meta`` holds at least ``file`` and ``line`` (1-based line where the record
    starts) so any output can be traced back to its input.
    """

    id: str
    source: str
    title: str
    text: str
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "title": self.title,
                "text": self.text, "meta": self.meta}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Document":
        return cls(id=obj["id"], source=obj["source"], title=obj.get("title", ""),
                   text=obj["text"], meta=obj.get("meta") or {})


@dataclasses.dataclass
class Reject:
    """A record that did not make it, and why.

    ``kind`` is one of ``rejected`` (bad input), ``filtered`` (a quality filter
    said no) or ``duplicate`` (dedup removed it; ``kept_id`` names the survivor).
    """

    stage: str
    reason: str
    kind: str = "rejected"
    id: Optional[str] = None
    file: Optional[str] = None
    line: Optional[int] = None
    excerpt: str = ""
    kept_id: Optional[str] = None
    detail: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def for_doc(cls, doc: Document, stage: str, reason: str, kind: str,
                kept_id: Optional[str] = None, detail: Optional[str] = None) -> "Reject":
        return cls(stage=stage, reason=reason, kind=kind, id=doc.id,
                   file=doc.meta.get("file"), line=doc.meta.get("line"),
                   excerpt=excerpt(doc.text), kept_id=kept_id, detail=detail)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The first ``limit`` characters of ``text`` (what rejects keep of a record)."""
    return text if len(text) <= limit else text[:limit] + "…"


def content_id(source: str, title: str, text: str) -> str:
    """A stable id from content alone, for records whose source has no id.

    It depends only on what the record says, never on file paths or worker count.
    """
    h = hashlib.blake2b(f"{source}\x00{title}\x00{text}".encode("utf-8"), digest_size=10)
    return f"{source}:h{h.hexdigest()}"


def native_id(source: str, raw_id: Any) -> str:
    """Namespace a source's own id (wiki ``id``, baike ``qid``, news ``news_id``)."""
    return f"{source}:{raw_id}"


def stable_hash64(data: str | bytes) -> int:
    """A 64-bit hash that is the same in every process (unlike ``hash()``)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def record_key(d: dict[str, Any]) -> tuple[str, str, int]:
    """Who a document record is, for choosing dedup survivors: the id, then where it was read.

    ``d`` is a ``Document.to_json()`` dict. The same article can arrive twice with
    the same id (a wiki dump as JSON and as <doc> files); the file/line tie-break
    keeps exactly one of them.
    """
    meta = d.get("meta") or {}
    return d["id"], str(meta.get("file", "")), int(meta.get("line") or 0)
