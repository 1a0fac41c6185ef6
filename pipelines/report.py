"""``python -m pipelines.report DIR [--out FILE.html]``: stats.json -> one self-contained HTML page.

Charts are matplotlib PNGs embedded as data URIs, so the page can be mailed or
attached to a ticket as a single file.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import sys
from typing import Optional

import matplotlib

matplotlib.use("Agg")  # no display on workers or CI
import matplotlib.pyplot as plt  # noqa: E402

from apache_beam.io.filesystems import FileSystems  # noqa: E402


def _load(path: str) -> dict:
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num_sorted(d: dict) -> list[tuple[str, float]]:
    def key(kv):
        try:
            return (0, float(kv[0]))
        except ValueError:
            return (1, 0.0)
    return sorted(d.items(), key=key)


def bar_chart(title: str, data: dict, xlabel: str = "", horizontal: bool = False) -> Optional[str]:
    if not data:
        return None
    items = _num_sorted(data) if not horizontal else sorted(data.items(), key=lambda kv: kv[1])
    labels = [str(k) for k, _ in items]
    values = [v for _, v in items]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.3 * len(items)) if horizontal else 3.2))
    if horizontal:
        ax.barh(labels, values, color="#4878a8")
    else:
        ax.bar(labels, values, color="#4878a8")
        ax.tick_params(axis="x", rotation=60 if len(labels) > 8 else 0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    return _png(fig)


def funnel_chart(stats: dict) -> Optional[str]:
    stages = stats.get("stages", {})
    rows = []
    for name in ("clean", "dedup"):
        s = stages.get(name)
        if s:
            rows.append((f"{name} in", sum(s.get("docs_in", {}).values())))
            rows.append((f"{name} out", sum(s.get("docs_out", {}).values())))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.barh([r[0] for r in rows][::-1], [r[1] for r in rows][::-1], color="#6a9f58")
    ax.set_title("documents through the stages")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def render(out_dir: str) -> str:
    """The HTML page for a build output directory."""
    stats = _load(f"{out_dir}/stats.json")
    manifest = _load(f"{out_dir}/manifest.json")
    stages = stats.get("stages", {})
    charts: list[tuple[str, Optional[str]]] = [
        ("Funnel", funnel_chart(stats)),
        ("Filter / reject / duplicate reasons", bar_chart("records removed, by reason",
                                                          stats.get("reasons", {}), horizontal=True)),
    ]
    for name in ("clean", "dedup"):
        s = stages.get(name) or {}
        charts.append((f"{name}: characters out per source",
                       bar_chart(f"{name}: characters kept per source", s.get("chars_out", {}))))
        charts.append((f"{name}: document length", bar_chart(
            f"{name}: documents by length (chars, log2 buckets)", s.get("doc_chars_hist", {}))))
    cs = stages.get("clean") or {}
    if cs.get("pii"):  # issue 20: identifiers found (docs = documents with any), by type
        charts.append(("Personal data found (clean)", bar_chart("PII spans by type (docs: documents touched)",
                                                                cs["pii"], horizontal=True)))
    for source, hist in sorted((cs.get("quality_score_hist") or {}).items()):
        charts.append((f"Quality score: {source}", bar_chart(
            f"{source}: kept documents by quality score (lower edge of tenths)", hist)))
    d = stages.get("dedup") or {}
    charts.append(("Exact duplicate group sizes", bar_chart("exact duplicate groups by size",
                                                            d.get("exact_group_sizes", {}))))
    if d.get("near_cluster_sizes"):
        charts.append(("Near-duplicate cluster sizes", bar_chart("near-duplicate clusters by size",
                                                                 d["near_cluster_sizes"])))
    sg = stages.get("segment") or {}
    t = stages.get("instances") or {}
    charts += [
        ("Sentence length", bar_chart("sentences by length (chars, buckets of 10)",
                                      sg.get("sentence_chars", {}))),
        ("Tokens per instance", bar_chart("instances by real tokens (buckets of 16)",
                                          t.get("tokens_per_instance", {}))),
        ("Masked positions per instance", bar_chart("instances by masked positions",
                                                    t.get("masked_per_instance", {}))),
        ("Pair labels", bar_chart("SOP/NSP labels (1 = swapped / random)", t.get("label", {}))),
        ("TFRecord shard sizes", bar_chart("records per shard", {
            k.split("-of-")[0].rsplit("-", 1)[-1]: v["count"]
            for k, v in (stages.get("tfrecords") or {}).get("shards", {}).items()})),
    ]
    counts = stats.get("counts", {})
    vocab = stats.get("vocab", {})
    tfm = manifest.get("tfrecords", {})
    summary = [("records read", counts.get("read")), ("documents kept", counts.get("kept")),
               ("filtered", counts.get("filtered")), ("duplicates", counts.get("duplicates")),
               ("rejected", counts.get("rejected")), ("instances", tfm.get("num_instances")),
               ("[UNK] rate", vocab.get("unk_rate")), ("config hash", manifest.get("config_hash", "")[:16])]
    pii = (stages.get("clean") or {}).get("pii") or {}
    summary += [(f"PII: {k}", n) for k, n in sorted(pii.items())]
    seg = sg.get("segment_time") or {}
    if seg.get("cpu_seconds"):
        summary.append(("segmenter chars per CPU-second (in the stage)",
                        round(seg["chars"] / seg["cpu_seconds"])))
    timing = [(k, v.get("wall_seconds"), v.get("peak_rss_mb")) for k, v in stages.items()]
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>corpusflow report</title>",
             "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
             "th{text-align:left;background:#f3f3f3}img{max-width:100%}h2{margin-top:1.6em}</style>",
             f"</head><body><h1>corpusflow build report</h1><p>{e(out_dir)}</p>",
             "<h2>Summary</h2><table>"]
    parts += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in summary if v is not None]
    parts.append("</table><h2>Stages</h2><table><tr><th>stage</th><th>wall seconds</th>"
                 "<th>peak RSS (MB, largest process)</th></tr>")
    parts += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td><td>{e(str(m if m is not None else ''))}</td></tr>"
              for k, v, m in timing]
    parts.append("</table>")
    for title, img in charts:
        if img:
            parts.append(f"<h2>{e(title)}</h2><img alt='{e(title)}' src='{img}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Render DIR/stats.json as a self-contained HTML page.")
    ap.add_argument("dir")
    ap.add_argument("--out", default=None, help="default: DIR/report.html")
    args = ap.parse_args(argv)
    d = args.dir.rstrip("/")
    if not FileSystems.exists(f"{d}/stats.json"):
        print(f"corpusflow: error: {d}/stats.json not found (run pipelines.build first)", file=sys.stderr)
        return 2
    page = render(d)
    out = args.out or f"{d}/report.html"
    if "://" not in out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with FileSystems.create(out) as f:
        f.write(page.encode("utf-8"))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
