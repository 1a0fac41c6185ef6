"""Quality model on ../shared/corpus: held-out AUC, the bottom documents, signal cost.

``python bench/quality_bench.py [--corpus ../shared/corpus] [--out bench_out/quality]``

Positive: Wikipedia articles and baike (DuReader) answers; negative: the messy
multi-label news dump and the SogouCA web-news pages (boilerplate). Trained as
``python -m corpusflow.quality.train`` does (dedup, tail-hash held-out split).
Then every document of the corpus is scored; the lowest are printed and the
per-file mean scores and signals written to ``OUT/quality_bench.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpusflow.quality import model as qm  # noqa: E402
from corpusflow.quality.signals import quality_signals  # noqa: E402
from corpusflow.quality.train import holdout_split, read_docs  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    ap.add_argument("--out", default="bench_out/quality")
    ap.add_argument("--bottom", type=int, default=15)
    args = ap.parse_args(argv)
    c = Path(args.corpus)
    if not c.is_dir():
        print(f"quality_bench: {c} not found", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    pos_globs = [str(c / "wiki" / "*.jsonl"), str(c / "baike" / "dureader_demo_qa.baike2018qa.jsonl")]
    neg_globs = [str(c / "messy" / "*.txt"), str(c / "news" / "sogouca_tensite_smarty.news2016zh.jsonl")]
    pos_tr, pos_te = holdout_split(list(read_docs(pos_globs)), 5)
    neg_tr, neg_te = holdout_split(list(read_docs(neg_globs)), 5)
    t0 = time.process_time()
    model = qm.train(pos_tr, neg_tr)
    train_cpu = time.process_time() - t0
    auc = qm.auc([model.score(d) for d in pos_te], [model.score(d) for d in neg_te])
    print(f"train {len(pos_tr)}+/{len(neg_tr)}- docs ({train_cpu:.1f} CPU-s); held-out AUC {auc:.4f} "
          f"({len(pos_te)} positive, {len(neg_te)} negative)")
    # Signals alone (what the default build computes) on the held-out part.
    for name, docs in (("positive", pos_te), ("negative", neg_te)):
        sig = [quality_signals(d) for d in docs]
        means = {k: round(sum(s[k] for s in sig) / len(sig), 4) for k in sig[0]}
        print(f"held-out {name} signal means: {means}")
    rows = []
    chars = 0
    t_sig = t_score = 0.0
    for path in sorted(glob.glob(str(c / "**" / "*"), recursive=True)):
        if not os.path.isfile(path) or path.endswith(".md"):
            continue
        for text in read_docs([path]):
            t1 = time.process_time()
            s = quality_signals(text)
            t2 = time.process_time()
            s["score"] = model.score(text)
            t3 = time.process_time()
            t_sig += t2 - t1
            t_score += t3 - t2
            chars += len(text)
            rows.append((s["score"], os.path.relpath(path, c), text, s))
    rows.sort(key=lambda r: r[0])
    print(f"\nscored {len(rows)} cleaned documents ({chars:,} chars): signals {chars / t_sig / 1e6:.2f} M chars/CPU-s, "
          f"model score {chars / t_score / 1e6:.2f} M chars/CPU-s")
    print(f"\nbottom {args.bottom} documents:")
    for score, f, text, s in rows[:args.bottom]:
        print(f"  {score:.4f} {f}: {text[:70]!r} dup10={s['dup10']} boiler={s['boiler']}")
    by_file: dict = {}
    for score, f, _, s in rows:
        by_file.setdefault(f, []).append(s)
    summary = {f: {"docs": len(v), **{k: round(sum(x[k] for x in v) / len(v), 4) for k in v[0]}}
               for f, v in sorted(by_file.items())}
    print("\nmean score per file (manpages: per language folder):")
    groups: dict = {}
    for score, f, _, s in rows:
        key = os.path.dirname(f) if f.startswith("trad_markup/manpages") else f
        groups.setdefault(key, []).append(score)
    for f, v in sorted(groups.items()):
        print(f"  {sum(v) / len(v):.3f}  {f} ({len(v)} docs)")
    with open(os.path.join(args.out, "quality_bench.json"), "w", encoding="utf-8") as fh:
        json.dump({"auc": round(auc, 4), "train": [len(pos_tr), len(neg_tr)], "heldout": [len(pos_te), len(neg_te)],
                   "per_file": summary,
                   "bottom": [{"score": r[0], "file": r[1], "excerpt": r[2][:200]} for r in rows[:50]]},
                  fh, ensure_ascii=False, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
