"""Benchmark the near-dup stage: MB/s per core and peak RSS, small vs large corpus.

The real documents of ../shared/corpus (or the committed sample) are replicated
until the corpus reaches each size; every replica after the first is a perturbed
near-copy (sentences deleted/inserted/replaced, byline, truncated tail, punctuation
width, or a mix), never an exact copy. Each size is measured in fresh processes:

- ``read``: read JSON lines and parse (the cost any stage pays),
- ``stage``: the same plus ``NearDedup`` and counting its outputs,

with CPU seconds from ``getrusage`` (self + children, user + system) and peak RSS.
Net stage cost = stage - read. Single worker, FnApiRunner (in-process).

    .venv/bin/python bench/near_dedup_bench.py --sizes 10 200 --workdir /tmp/ndbench
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

NEAR_KINDS = ("delete", "insert", "replace", "byline", "truncate", "punct_width", "mixed")


def build_corpus(path: str, mb: float, seed: int = 0) -> dict:
    """Write ``mb`` MB of JSON lines ``{"id","source","text"}``: originals, then
    rounds of perturbed replicas."""
    from tests import neardup_eval as ev
    base = ev.load_documents(ev.corpus_files("shared"), min_chars=50)
    pool = [s for _, _, t in base for s in ev.sentences(t) if len(s) >= 8]
    target = int(mb * 1e6)
    size = n = 0
    with open(path, "w", encoding="utf-8") as f:
        r = 0
        while size < target:
            for doc_id, source, text in base:
                if r:
                    rng = random.Random(f"{seed}:{doc_id}:{r}")
                    text = ev.PERTURB[rng.choice(NEAR_KINDS)](text, rng, pool)
                    doc_id = f"{doc_id}#r{r}"
                line = json.dumps({"id": doc_id, "source": source, "text": text},
                                  ensure_ascii=False) + "\n"
                f.write(line)
                size += len(text.encode("utf-8"))
                n += 1
                if size >= target:
                    break
            r += 1
    return {"path": path, "text_mb": round(size / 1e6, 2), "docs": n, "replica_rounds": r}


def _parse(line: str) -> tuple[str, str, str]:
    d = json.loads(line)
    return d["id"], d["source"], d["text"]


def run_one(mode: str, path: str) -> dict:
    """One measured pipeline run in this (fresh) process."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipelines.beam_util import query_counters
    from pipelines.near_dedup import NearDedup

    t0 = time.time()
    p = beam.Pipeline(runner=FnApiRunner())
    docs = p | beam.io.ReadFromText(path) | "Parse" >> beam.Map(_parse)
    if mode == "read":
        _ = docs | beam.Map(lambda d: len(d[2])) | beam.CombineGlobally(sum)
    else:
        out = docs | NearDedup()
        _ = out["dropped"] | "CountDropped" >> beam.combiners.Count.Globally()
        _ = out["clusters"] | "CountClusters" >> beam.combiners.Count.Globally()
    result = p.run()
    result.wait_until_finish()
    wall = time.time() - t0
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"mode": mode, "wall_s": round(wall, 1),
            "cpu_s": round(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, 2),
            "peak_rss_mb": round(max(me.ru_maxrss, kids.ru_maxrss) / 1024, 1),
            "counters": query_counters(result)}


def _measure(mode: str, path: str) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--run", mode, "--input", path],
                         check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[10, 200], help="corpus sizes, MB")
    ap.add_argument("--workdir", default="/tmp/near_dedup_bench")
    ap.add_argument("--run", choices=("read", "stage"), help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run:
        print(json.dumps(run_one(args.run, args.input)))
        return
    os.makedirs(args.workdir, exist_ok=True)
    rows = []
    for mb in args.sizes:
        corpus = build_corpus(os.path.join(args.workdir, f"corpus-{mb:g}MB.jsonl"), mb)
        read, stage = _measure("read", corpus["path"]), _measure("stage", corpus["path"])
        net = stage["cpu_s"] - read["cpu_s"]
        row = {**corpus, "read_cpu_s": read["cpu_s"], "stage_cpu_s": stage["cpu_s"],
               "net_cpu_s": round(net, 2),
               "net_cpu_s_per_mb": round(net / corpus["text_mb"], 3),
               "mb_per_s_per_core": round(corpus["text_mb"] / net, 2),
               "mb_per_s_per_core_incl_read": round(corpus["text_mb"] / stage["cpu_s"], 2),
               "stage_wall_s": stage["wall_s"], "peak_rss_mb": stage["peak_rss_mb"],
               "read_peak_rss_mb": read["peak_rss_mb"], "counters": stage["counters"]}
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        print(json.dumps({"cost_per_mb_ratio_large_vs_small":
                          round(large["net_cpu_s_per_mb"] / small["net_cpu_s_per_mb"], 3)}))


if __name__ == "__main__":
    main()
