"""OCNLI dev accuracy of albert_tiny fine-tuned from random weights and from pretraining runs, and int8 TFLite.

    nice -n 19 python bench/finetune_bench.py --train ../shared/eval/ocnli/train.3k.json \
        --dev ../shared/eval/ocnli/dev.json --work /tmp/ocnli_ft [--seeds 1,2,3] [--epochs 5] [--lr 1e-4] \
        [--max_seq_length 64] [--init RUN ...] \
        [--shards DIR [--corpus GLOB ...] --pretrain_minutes 30 [--pretrain_lr 1e-3 ...]] [--json OUT.json]

Candidates: ``none`` (random albert_tiny), each ``--init`` run directory, and with ``--pretrain_minutes`` a run
pretrained here: ``--corpus`` globs are first built into ``--shards`` (unless it already has a manifest), then
``trainer_hooks.pretrain`` trains albert_tiny on them (AdamW, warmup then a constant learning rate, so that where
it stops does not change the schedule) until the wall-clock budget is spent and stops at the next checkpoint
(every ``--pretrain_save_every`` steps). Its steps, examples/s, CPU seconds, the machine's load average and its
MLM accuracy over the last steps (batches it had not seen: the run is shorter than one epoch) are reported.

Every candidate is fine-tuned with the same hyper-parameters once per ``--seeds`` seed (head init, dropout, example
order); the table shows mean, standard deviation and range of the best epoch's dev accuracy, the majority-class
baseline, the difference of each pretrained candidate to random init against the seeds' spread, how much each
encoder's outputs vary with the input (a collapsed encoder gives every input the same vector), and, for the first
``--int8_seeds`` seeds, the dev accuracy of the ``dynamic_int8`` TFLite export. Finished steps are kept in --work,
so a rerun continues. OCNLI is CC BY-NC: read it from ``../shared/eval/ocnli``, never copy it into the repository.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO}
sys.path.insert(0, REPO)  # trainer_hooks for the steps run in this process


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--init", action="append", default=[], help="pretraining run directory (repeatable)")
    p.add_argument("--config", default=os.path.join(REPO, "trainer_hooks", "configs", "albert_config_tiny.json"))
    p.add_argument("--seeds", default="1,2,3", help="fine-tuning seeds, comma-separated")
    p.add_argument("--epochs", default="5")
    p.add_argument("--lr", default="1e-4")
    p.add_argument("--batch_size", default="32")
    p.add_argument("--max_seq_length", default="64")
    p.add_argument("--int8_seeds", type=int, default=1, help="int8 TFLite export of the first N seeds' runs")
    p.add_argument("--no_random", action="store_true", help="skip the random-init baseline")
    p.add_argument("--shards", default=None, help="pipeline output to pretrain on (built from --corpus if absent)")
    p.add_argument("--corpus", action="append", default=[], help="input glob of pipelines.build (repeatable)")
    p.add_argument("--pretrain_minutes", type=float, default=0.0, help="wall-clock budget of the pretraining run")
    p.add_argument("--pretrain_lr", default="1e-3")
    p.add_argument("--pretrain_batch_size", default="32")
    p.add_argument("--pretrain_warmup", default="40")
    p.add_argument("--pretrain_precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: bf16 on a GPU or a CPU that runs it natively, else fp32 (emulated bf16 is slower)")
    p.add_argument("--pretrain_save_every", default="10")
    p.add_argument("--json", default=None)
    return p.parse_args()


def build_shards(args: argparse.Namespace) -> dict:
    """``pipelines.build`` of the ``--corpus`` globs into ``--shards`` (decontaminated against the dev set)."""
    if os.path.exists(os.path.join(args.shards, "manifest.json")):
        return {"built": False}
    cmd = [sys.executable, "-m", "pipelines.build", "--output", args.shards, "--token_boundary", "true",
           "--dupe_factor", "2", "--max_seq_length", "128", "--max_predictions_per_seq", "20", "--num_shards", "8",
           "--decontaminate", args.dev]
    for glob in args.corpus:
        cmd += ["--input", glob]
    t0 = time.time()
    subprocess.run(cmd, cwd=REPO, env=ENV, check=True)
    return {"built": True, "seconds": time.time() - t0, "command": cmd}


def pretrain(args: argparse.Namespace) -> dict:
    """Pretrain albert_tiny on ``--shards`` for ``--pretrain_minutes``, stopping at the first checkpoint after it."""
    run = os.path.join(args.work, "pretrain")
    done_path = os.path.join(args.work, "pretrain_done.json")
    if os.path.exists(done_path):
        with open(done_path, encoding="utf-8") as f:
            return json.load(f)
    from trainer_hooks.hardware import auto_precision  # no TensorFlow import
    precision = auto_precision() if args.pretrain_precision == "auto" else args.pretrain_precision
    cmd = [sys.executable, "-m", "trainer_hooks.pretrain", "--input", os.path.join(args.shards, "tfrecords", "part-*"),
           "--manifest", os.path.join(args.shards, "manifest.json"), "--model", "albert", "--config", args.config,
           "--model_dir", run, "--num_train_steps", "1000000", "--poly_power", "0", "--optimizer", "adamw",
           "--learning_rate", args.pretrain_lr, "--train_batch_size", args.pretrain_batch_size,
           "--num_warmup_steps", args.pretrain_warmup, "--precision", precision,
           "--save_checkpoints_steps", args.pretrain_save_every, "--keep_checkpoint_max", "2",
           "--progress_every", args.pretrain_save_every]
    loads: list[list[float]] = []
    stop = threading.Event()

    def sample_load() -> None:
        while not stop.is_set():
            with open("/proc/loadavg", encoding="utf-8") as f:
                loads.append([float(x) for x in f.read().split()[:3]])
            stop.wait(60)

    sampler = threading.Thread(target=sample_load, daemon=True)
    sampler.start()
    t0 = time.time()
    deadline = t0 + 60 * args.pretrain_minutes
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stderr=subprocess.PIPE, text=True)
    last_saved = None
    with open(os.path.join(args.work, "pretrain.log"), "w", encoding="utf-8") as log:
        for line in proc.stderr:
            log.write(line)
            log.flush()
            if line.startswith("[trainer]"):
                print(line, end="", file=sys.stderr, flush=True)
            if line.startswith("[trainer] saved checkpoint"):
                last_saved = line.rsplit("(step ", 1)[1].rstrip(")\n")
                if time.time() >= deadline:
                    proc.send_signal(signal.SIGTERM)  # the budget is spent: this checkpoint is the run's result
                    break
        proc.wait()
    wall = time.time() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    if last_saved is None:
        raise SystemExit(f"pretraining saved no checkpoint (exit status {proc.returncode}); see {run}")
    steps = int(last_saved)
    with open(os.path.join(run, "train_log.jsonl"), encoding="utf-8") as f:
        log_rows = [json.loads(ln) for ln in f if ln.strip()]
    last = [r for r in log_rows if steps - 50 < r["step"] <= steps]
    batch = int(args.pretrain_batch_size)
    out = {"run": run, "command": cmd, "steps": steps, "examples": steps * batch, "wall_s": wall,
           "examples_per_s": steps * batch / wall,
           "cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
           "mlm_accuracy_last50": statistics.mean(r["mlm_accuracy"] for r in last),
           "mlm_loss_last50": statistics.mean(r["mlm_loss"] for r in last),
           "sop_accuracy_last50": statistics.mean(r["sop_accuracy"] for r in last),
           "mlm_accuracy_first10": statistics.mean(r["mlm_accuracy"] for r in log_rows[:10]),
           "load_avg_1m": {"mean": statistics.mean(x[0] for x in loads), "min": min(x[0] for x in loads),
                           "max": max(x[0] for x in loads), "samples": len(loads)},
           "cpus": os.cpu_count(), "precision": precision}
    with open(done_path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
    return out


def finetune(args: argparse.Namespace, init: str, tag: str, seed: int, int8: bool) -> dict:
    out = os.path.join(args.work, f"ft_{tag}_seed{seed}")
    cmd = [sys.executable, "-m", "trainer_hooks.finetune", "--task", "pair", "--train", args.train, "--dev",
           args.dev, "--model", "albert", "--init", init, "--output", out, "--num_epochs", args.epochs,
           "--learning_rate", args.lr, "--batch_size", args.batch_size, "--max_seq_length", args.max_seq_length,
           "--seed", str(seed)]
    if init == "none":
        cmd += ["--config", args.config]
    t0 = time.time()
    if not os.path.exists(os.path.join(out, "metrics.json")):
        subprocess.run(cmd, cwd=REPO, env=ENV, check=True)
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        m = json.load(f)
    row: dict[str, Any] = {"init": init, "seed": seed, "dev_accuracy": m["dev"]["accuracy"],
                           "dev_macro_f1": m["dev"]["macro_f1"], "best_epoch": m["best_epoch"],
                           "counts": m["counts"], "minutes": (time.time() - t0) / 60}
    if int8:
        lite = out + "_int8"
        if not os.path.exists(os.path.join(lite, "tflite_check.json")):
            subprocess.run([sys.executable, "-m", "trainer_hooks.export", "--model_dir", out, "--output", lite,
                            "--tflite", "--quantize", "dynamic_int8"], cwd=REPO, env=ENV, check=True)
        with open(os.path.join(lite, "tflite_check.json"), encoding="utf-8") as f:
            lc = json.load(f)
        row.update(int8_dev_accuracy=lc["dev_accuracy_tflite"], int8_dev_accuracy_change=lc["dev_accuracy_change"],
                   int8_class_agreement=lc["class_agreement"], int8_mb=lc["bytes"] / 2**20)
    return row


def representation_spread(args: argparse.Namespace, init: str, n: int = 256) -> dict:
    """How much the encoder's outputs vary with the input, on the first ``n`` dev pairs: mean pairwise cosine of
    the pooled outputs (1.0: every input gives the same vector, nothing for a classifier to use) and the per-feature
    standard deviation of the last layer's token outputs relative to their mean magnitude."""
    from trainer_hooks import cli
    tf = cli.import_tensorflow_quietly()
    import numpy as np

    from corpusflow.tokenize import DEFAULT_VOCAB
    from trainer_hooks import finetune_data as fd
    from trainer_hooks.finetune_init import load_encoder, resolve_init
    spec = resolve_init(init, "albert", args.config if init == "none" else None)
    rows = fd.read_rows(args.dev, "auto", "pair", fd.CounterDict())[:n]
    enc = fd.encode_rows(rows, fd.TextEncoder(spec["vocab_file"] or DEFAULT_VOCAB, int(args.max_seq_length)),
                         fd.build_labels(rows), fd.CounterDict())
    seq, pooled = load_encoder("albert", spec, "float32", 1).encoder(
        tf.constant(enc.input_ids), tf.constant(enc.segment_ids), tf.constant(enc.input_mask))
    x = pooled.numpy() / np.linalg.norm(pooled.numpy(), axis=1, keepdims=True)
    cos = (x @ x.T)[~np.eye(len(x), dtype=bool)]
    tokens = seq.numpy()[enc.input_mask.astype(bool)]
    return {"pooled_mean_cosine": float(cos.mean()),
            "token_sd_over_mean_abs": float(tokens.std(0).mean() / np.abs(tokens).mean()), "pairs": len(x)}


def summary(rows: list[dict]) -> dict:
    acc = [r["dev_accuracy"] for r in rows]
    return {"n": len(acc), "mean": statistics.mean(acc), "sd": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "min": min(acc), "max": max(acc)}


def main() -> int:
    args = parse_args()
    os.makedirs(args.work, exist_ok=True)
    labels = collections.Counter()
    with open(args.dev, encoding="utf-8") as f:
        for ln in f:
            lab = json.loads(ln).get("label")
            if lab != "-":
                labels[lab] += 1
    majority = max(labels.values()) / sum(labels.values())
    report: dict[str, Any] = {"majority": majority}
    inits = ([] if args.no_random else [("none", "random")]) + [(r, f"init{i}") for i, r in enumerate(args.init)]
    if args.pretrain_minutes:
        if not args.shards:
            raise SystemExit("--pretrain_minutes needs --shards")
        report["shards"] = build_shards(args)
        report["pretrain"] = pretrain(args)
        inits.append((report["pretrain"]["run"], "pretrained"))
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [finetune(args, init, tag, s, i < args.int8_seeds) for init, tag in inits for i, s in enumerate(seeds)]
    report["rows"] = rows
    report["summary"] = {init: summary([r for r in rows if r["init"] == init]) for init, _ in inits}
    for init, _ in inits:
        report["summary"][init]["encoder_outputs"] = representation_spread(args, init)
    print(f"\nOCNLI dev ({sum(labels.values())} rows with a gold label), majority class {100 * majority:.1f}")
    if "pretrain" in report:
        p = report["pretrain"]
        print(f"pretraining: {p['steps']} steps ({p['examples']} examples) in {p['wall_s'] / 60:.1f} min, "
              f"{p['examples_per_s']:.1f} examples/s, {p['cpu_s'] / 60:.1f} CPU-min on {p['cpus']} cores, load avg "
              f"{p['load_avg_1m']['mean']:.1f} ({p['load_avg_1m']['min']:.1f}-{p['load_avg_1m']['max']:.1f}); MLM "
              f"accuracy {p['mlm_accuracy_first10']:.3f} (first 10 steps) -> {p['mlm_accuracy_last50']:.3f} (last 50)")
    base: Optional[dict] = report["summary"].get("none")
    for init, _ in inits:
        s = report["summary"][init]
        line = (f"  init {init:40s} acc {100 * s['mean']:.1f} +- {100 * s['sd']:.1f} (sd over {s['n']} seeds, "
                f"range {100 * s['min']:.1f}-{100 * s['max']:.1f})")
        if base is not None and init != "none":
            diff = s["mean"] - base["mean"]
            spread = max(s["sd"], base["sd"])
            s["minus_random"] = diff
            s["exceeds_spread"] = abs(diff) > spread
            line += f"; vs random {100 * diff:+.1f} ({'exceeds' if abs(diff) > spread else 'within'} the larger sd)"
        print(line)
        e = s["encoder_outputs"]
        print(f"      encoder outputs on {e['pairs']} dev pairs: pooled mean pairwise cosine "
              f"{e['pooled_mean_cosine']:.4f}, last-layer token sd / mean |x| {e['token_sd_over_mean_abs']:.5f}")
        for r in (r for r in rows if r["init"] == init and "int8_dev_accuracy" in r):
            print(f"      seed {r['seed']}: acc {100 * r['dev_accuracy']:.2f}, int8 TFLite acc "
                  f"{100 * r['int8_dev_accuracy']:.2f} (change {100 * r['int8_dev_accuracy_change']:+.2f}, class "
                  f"agreement {100 * r['int8_class_agreement']:.1f}%, {r['int8_mb']:.1f} MB)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
