"""What a finished build writes about itself: ``manifest.json`` and ``stats.json``."""

from __future__ import annotations

import importlib.metadata
import sys
from typing import Any

from corpusflow import __version__
from pipelines.stages import REGISTRY

_DEPS = ("apache-beam", "jieba", "opencc", "datasketch", "zstandard", "pyarrow", "google-crc32c",
         "ltp-extension", "ltp", "tensorflow-cpu", "tensorflow", "sentencepiece", "tokenizers")


def versions() -> dict[str, str]:
    out = {"corpusflow": __version__, "python": sys.version.split()[0]}
    for d in _DEPS:
        try:
            out[d] = importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def summarize_counts(counters: dict[str, int], last_doc_stage: str) -> dict[str, int]:
    """The manifest's ``counts``: read = kept + filtered + duplicates + rejected."""
    def total(prefixes):
        return sum(v for k, v in counters.items() if k.startswith(prefixes))
    kept = counters.get("dedup:kept", 0) if last_doc_stage == "dedup" else counters.get("clean:kept", 0)
    stages_ = ("read:", "clean:") + (("dedup:",) if last_doc_stage == "dedup" else ())
    return {
        "read": counters.get("read:records", 0),
        "kept": kept,
        "filtered": total(tuple(f"{s}filtered:" for s in stages_)),
        "duplicates": total(("dedup:duplicate:",)) if last_doc_stage == "dedup" else 0,
        "rejected": total(tuple(f"{s}rejected:" for s in stages_)),
    }


def empty_reason(manifest: dict) -> str:
    """Why a finished run counts as empty ("" when it kept something)."""
    c = manifest["counts"]
    if c["kept"] == 0:
        reasons = sorted(((-v, k) for k, v in manifest["counters"].items()
                          if k.count(":") == 2 and k.split(":")[1] in
                          ("rejected", "filtered", "duplicate")))
        top = ", ".join(f"{k}={-v}" for v, k in reasons[:5]) or "no records read"
        return f"the run kept no document (read {c['read']}: {top})"
    tf = manifest.get("tfrecords")
    if tf is not None and tf.get("num_instances", 0) == 0:
        return f"the run kept {c['kept']} document(s) but made no pretraining instance"
    return ""


def build_stats(manifest: dict, results: dict[str, dict]) -> dict:
    """``stats.json``: what each stage computed with Beam combiners, in one place."""
    stats: dict[str, Any] = {"counts": manifest["counts"], "stages": {}}
    by_name = {s.name: s for s in REGISTRY}
    for stage, r in results.items():
        s = dict(r.get("stats") or {})
        s["wall_seconds"] = r.get("wall_seconds")
        s["peak_rss_mb"] = r.get("peak_rss_mb")
        summary = by_name[stage].summary if stage in by_name else None
        if summary is not None:
            s.update(summary(r.get("shards", [])))
        else:
            s["shards"] = {x["file"]: {"count": x["count"], "bytes": x["bytes"]}
                           for x in sorted(r.get("shards", []), key=lambda x: x["file"])}
        stats["stages"][stage] = s
    reasons: dict[str, int] = {}
    for k, v in manifest["counters"].items():
        parts = k.split(":")
        if len(parts) == 3 and parts[1] in ("rejected", "filtered", "duplicate"):
            reasons[k] = v
    stats["reasons"] = reasons
    toks = (results.get("instances", {}).get("stats") or {}).get("tokens") or {}
    if toks.get("total"):
        stats["vocab"] = {"tokens": toks["total"], "unk_tokens": toks.get("unk", 0),
                          "unk_rate": round(toks.get("unk", 0) / toks["total"], 6)}
    return stats
