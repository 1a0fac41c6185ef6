"""Near-copies planted into real text, through the real build: are they removed whole?

Real documents of ../shared/corpus (or the committed sample) are thinned to
distinct ones (no pair with char-5-gram Jaccard >= 0.5) and each gets one planted
near-copy, kinds in rotation (``tests/neardup_eval.LINE_KINDS``): punctuation to
half width, letters/digits/punctuation to full width, a few characters replaced,
deleted or inserted, two lines swapped, ~10% of the lines dropped, a paragraph of
other real text appended. Multi-line documents (where line dedup can cut a copy
into a fragment; up to ``--limit``) and at most as many one-line documents are
planted (../shared/corpus: 484 and 299).

The corpus then runs through ``python -m pipelines.build ... --stop_after dedup``
with the DEFAULT options plus ``--near_dedup true`` (line dedup on), and the output
is scored (``tests/neardup_eval.evaluate_build``):

- recall counted only for copies removed WHOLE (exactly one of copy and original
  is left in ``docs/``, the other is gone entirely), for copies with true
  Jaccard >= 0.8 after NFKC folding, and over all copies;
- precision of removals (a removed document's kept document is of its family);
- partial copies: copy and original both left, one of them with lines removed.

    .venv/bin/python bench/near_dedup_bench.py [--corpus shared|sample] [--line_dedup true,false]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def choose(corpus: str, limit: int, seed: int = 0):
    """(originals, paragraph pool): multi-line and one-line distinct documents."""
    from tests import neardup_eval as ev
    docs = ev.load_documents(ev.corpus_files(corpus), min_chars=200)
    distinct, _, _ = ev.distinct_originals(sorted(docs), 5)

    def multi(text: str) -> bool:
        return sum(1 for line in text.split("\n") if len(line) >= 10) >= 2

    m = [d for d in distinct if multi(d[2])][:limit]
    s = [d for d in distinct if not multi(d[2])][:len(m)]
    chosen = {d[0] for d in m + s}
    pool = sorted({line for d in docs if d[0] not in chosen for line in d[2].split("\n")
                   if 30 <= len(line) <= 300})
    return sorted(m + s), pool


def run_build(input_path: str, out: str, line_dedup: str, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pipelines.build", "--input", input_path, "--output", out,
           "--near_dedup", "true", "--line_dedup", line_dedup, "--stop_after", "dedup",
           "--progress", "false", "--num_doc_shards", "4"] + extra
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    manifest = json.loads(open(os.path.join(out, "manifest.json"), encoding="utf-8").read())
    return {"wall_s": round(time.time() - t0, 1), "counters": manifest.get("counters", {})}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", choices=("shared", "sample"), default="shared")
    ap.add_argument("--limit", type=int, default=600, help="multi-line originals (as many one-line)")
    ap.add_argument("--line_dedup", default="true", help="comma list, e.g. true,false")
    ap.add_argument("--workdir", default="/tmp/near_dedup_bench")
    ap.add_argument("--seed", type=int, default=0)
    args, extra = ap.parse_known_args(argv)
    from tests import neardup_eval as ev
    originals, pool = choose(args.corpus, args.limit, args.seed)
    planted = ev.plant_copies(originals, pool, seed=args.seed)
    os.makedirs(args.workdir, exist_ok=True)
    inp = os.path.join(args.workdir, "planted.jsonl")
    ev.write_input(planted, inp)
    print(f"{len(originals)} originals, {len(planted.kind)} planted copies", file=sys.stderr)
    for ld in args.line_dedup.split(","):
        out = os.path.join(args.workdir, f"out-line_dedup-{ld}")
        shutil.rmtree(out, ignore_errors=True)
        run = run_build(inp, out, ld, extra)
        res = ev.evaluate_build(planted, out)
        c = run["counters"]
        res = {"line_dedup": ld, **res, "wall_s": run["wall_s"],
               "counters": {k: v for k, v in sorted(c.items())
                            if k.startswith(("dedup:", "neardup:removed"))}}
        print(json.dumps(res, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
