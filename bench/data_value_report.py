"""Comparisons and the printed table of ``bench/data_value.py``.

OCNLI: a model's figure is the dev accuracy after the last fine-tuning epoch (no epoch picked on dev), mean and
sample standard deviation over its fine-tuning seeds (and pretraining seeds, when there are several). A difference
"exceeds the seed spread" when the two sets of runs do not overlap: every run of the better model beats every run
of the other. ``z`` is |difference| / standard error of the difference of the means.

MLM: one pretraining run per model in the CPU setting, so the spread shown is the evaluation's own (binomial
standard error over the masked tokens); with several pretraining seeds it is their standard deviation.
"""

from __future__ import annotations

import collections
import json
import math
import statistics
from typing import Any, Optional


def majority_share(dev: str) -> float:
    """Share of the most frequent gold label in a CLUE JSON-lines file (label "-" is not scored)."""
    labels: collections.Counter = collections.Counter()
    with open(dev, encoding="utf-8") as f:
        for ln in f:
            lab = json.loads(ln).get("label")
            if lab != "-":
                labels[lab] += 1
    return max(labels.values()) / sum(labels.values())


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def ocnli_stats(runs: list[dict]) -> dict[str, Any]:
    last = [r["last_epoch_accuracy"] for r in runs]
    best = [r["best_epoch_accuracy"] for r in runs]
    m, sd = mean_sd(last)
    return {"n": len(last), "mean": m, "sd": sd, "min": min(last), "max": max(last), "runs": last,
            "best_epoch_mean": statistics.fmean(best)}


def mlm_stats(models: list[dict], key: str = "mlm") -> dict[str, Any]:
    accs = [r[key]["mlm_accuracy"] for r in models]
    m, sd = mean_sd(accs)
    se = sd / math.sqrt(len(accs)) if len(accs) > 1 else models[0][key]["mlm_accuracy_se"]
    return {"n": len(accs), "mean": m, "sd": sd, "se": se, "runs": accs,
            "loss": statistics.fmean(r[key]["mlm_loss"] for r in models)}


def _ocnli_diff(a: dict, b: dict) -> dict[str, Any]:
    diff = a["mean"] - b["mean"]
    se = math.sqrt(a["sd"] ** 2 / a["n"] + b["sd"] ** 2 / b["n"])
    separated = a["min"] > b["max"] or b["min"] > a["max"]
    return {"diff": diff, "se": se, "z": abs(diff) / se if se > 0 else None, "exceeds_seed_spread": separated}


def _mlm_diff(a: dict, b: dict) -> dict[str, Any]:
    diff = a["mean"] - b["mean"]
    se = math.sqrt(a["se"] ** 2 + b["se"] ** 2)
    return {"diff": diff, "se": se, "z": abs(diff) / se if se > 0 else None, "exceeds_2se": abs(diff) > 2 * se}


def compare(out: dict, configs: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every pair worth a sentence: default vs each other build, each model vs random init, the distillation."""
    ocnli = {k: ocnli_stats(v) for k, v in out["ocnli"].items()}
    mlm = {k: mlm_stats(v) for k, v in out["pretrain"].items()}
    pairs = [("default", c) for c in configs if c != "default"]
    if "student_distilled" in mlm:
        pairs += [("student_distilled", "student_scratch"), ("default", "student_distilled")]
    pairs += [(k, "random") for k in ocnli if k != "random" and "random" in ocnli]
    rows = []
    for a, b in pairs:
        row: dict[str, Any] = {"a": a, "b": b}
        if a in mlm and b in mlm:
            row["mlm"] = _mlm_diff(mlm[a], mlm[b])
        if a in ocnli and b in ocnli:
            row["ocnli"] = _ocnli_diff(ocnli[a], ocnli[b])
        rows.append(row)
    return rows


def _pct(x: Optional[float], nd: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{nd}f}"


def print_table(out: dict) -> None:
    sp = out["split"]
    print(f"\nRaw split: {sp['documents']} documents -> {sp['train']} training ({sp['train_chars']:,} chars), "
          f"{sp['heldout']} held out ({sp['heldout_chars']:,} chars), {sp['decontaminated']} training documents "
          f"left out for sharing a 13-gram with a held-out one")
    print("\n| build | docs kept / read | instances | tokens | tokens/instance |")
    print("|---|---|---|---|---|")
    for name, b in out["builds"].items():
        c = b["counts"]
        print(f"| {name} | {c['kept']:,} / {c['read']:,} | {b['instances']:,} | {b['tokens']:,} | "
              f"{b['tokens_per_instance']:.1f} |")
    ocnli = {k: ocnli_stats(v) for k, v in out["ocnli"].items()}
    print(f"\n| model | steps | tokens read | MLM acc, held-out wwm (±se) | MLM acc, held-out token | MLM loss | "
          f"OCNLI dev acc, last epoch, mean ± sd (min-max), n | best epoch mean |")
    print("|---|---|---|---|---|---|---|---|")
    names = list(out["pretrain"]) + (["random"] if "random" in ocnli else [])
    for name in names:
        runs = out["pretrain"].get(name)
        if runs:
            m, t = mlm_stats(runs), mlm_stats(runs, "mlm_token_masked")
            steps = "/".join(str(r["steps"]) for r in runs)
            toks = "/".join(f"{r['tokens_read']:,}" for r in runs)
            mlm = f"{_pct(m['mean'], 2)} ± {_pct(m['se'], 2)} | {_pct(t['mean'], 2)} | {m['loss']:.3f}"
        else:
            steps, toks, mlm = "0", "0", "- | - | -"
        o = ocnli.get(name)
        oc = (f"{_pct(o['mean'])} ± {_pct(o['sd'])} ({_pct(o['min'])}-{_pct(o['max'])}), {o['n']} | "
              f"{_pct(o['best_epoch_mean'])}") if o else "- | -"
        print(f"| {name} | {steps} | {toks} | {mlm} | {oc} |")
    print(f"\nOCNLI dev majority class: {_pct(out['majority'])}")
    print("\n| comparison | MLM diff (pts) | > 2 se? | OCNLI diff (pts) | exceeds seed spread? | z |")
    print("|---|---|---|---|---|---|")
    for r in out["comparisons"]:
        m, o = r.get("mlm"), r.get("ocnli")
        mz = f"{_pct(m['diff'], 2)} | {'yes' if m['exceeds_2se'] else 'no'}" if m else "- | -"
        if o:
            z = "-" if o["z"] is None else f"{o['z']:.1f}"
            oz = f"{_pct(o['diff'])} | {'yes' if o['exceeds_seed_spread'] else 'no'} | {z}"
        else:
            oz = "- | - | -"
        print(f"| {r['a']} vs {r['b']} | {mz} | {oz} |")
    if out.get("distill"):
        d = out["distill"]
        print(f"\nDistillation: teacher {d['teacher']}, student {d['student_config']['num_hidden_layers']} layers x "
              f"{d['student_config']['hidden_size']}; {d['distill_steps']} distillation steps; the scratch student "
              f"gets {d['scratch_steps']} steps (estimated FLOPs ratio {d['flops_ratio']:.2f}: teacher forward "
              f"{d['teacher_forward_gflops']:.2f} GFLOP, student forward {d['student_forward_gflops']:.2f} GFLOP "
              f"per instance)")
    t = out["this_invocation"]
    ld = t["load_avg_1m"]
    print(f"\nThis invocation: {t['wall'] / 60:.1f} min wall, {t['cpu'] / 60:.1f} CPU-min on {out['cpus']} CPUs, "
          f"{out['jobs']} runs at a time, precision {out['precision']}; 1-min load average {ld['mean']:.1f} "
          f"({ld['min']:.1f}-{ld['max']:.1f}). Phases (wall / CPU min): " + ", ".join(
              f"{k} {v['wall'] / 60:.1f} / {v['cpu'] / 60:.1f}" for k, v in t["phases"].items()))
