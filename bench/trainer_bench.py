"""Trainer throughput: ALBERT-tiny and NEZHA-tiny at seq 128 on CPU, 1 vs 2 Horovod processes, fp32 vs bf16.

    .venv/bin/python bench/trainer_bench.py [--steps 12] [--batch 16] [--json OUT.json]

Runs ``python -m trainer_hooks.pretrain`` (under ``horovodrun -np 2`` for 2 processes) on synthetic shards
(seq 128, 20 predictions, the shipped 21128-token configs) and reads ``train_log.jsonl``. Step time is the median
over steps after the first ``--warmup`` (tracing); examples/s = global batch / median step time. The batch is per
process, so 2 processes process twice the examples per step (weak scaling). 2-process rows are skipped when
horovod is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def have_horovod() -> bool:
    try:
        import horovod.tensorflow  # noqa: F401
        return True
    except ImportError:
        return False


def run_one(data_dir: str, model: str, precision: str, procs: int, steps: int, batch: int, warmup: int,
            work: str) -> dict:
    from trainer_hooks.config import shipped_config
    model_dir = os.path.join(work, f"{model}_{precision}_{procs}")
    shutil.rmtree(model_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "trainer_hooks.pretrain", "--input", os.path.join(data_dir, "tfrecords", "*"),
           "--manifest", os.path.join(data_dir, "manifest.json"), "--model", model,
           "--config", shipped_config(f"{model}_config_tiny"), "--model_dir", model_dir,
           "--num_train_steps", str(steps), "--train_batch_size", str(batch), "--learning_rate", "1e-4",
           "--optimizer", "lamb", "--precision", precision, "--save_checkpoints_steps", str(10 ** 9)]
    if procs > 1:
        horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
        cmd = [horovodrun if os.path.exists(horovodrun) else "horovodrun", "-np", str(procs), "-H",
               f"localhost:{procs}", *cmd, "--horovod"]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    with open(os.path.join(model_dir, "train_log.jsonl")) as f:
        log = [json.loads(line) for line in f]
    times = [r["step_time_s"] for r in log[warmup:]]
    step = statistics.median(times)
    return {"model": model, "precision": precision, "processes": procs, "batch_per_process": batch,
            "global_batch": batch * procs, "median_step_s": round(step, 4),
            "examples_per_sec": round(batch * procs / step, 2), "first_step_s": round(log[0]["step_time_s"], 2),
            "wall_s": round(wall, 1), "final_loss": round(log[-1]["loss"], 4)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=16, help="per process")
    p.add_argument("--models", default="albert,nezha")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--procs", default="1,2")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()

    from trainer_hooks.synthetic import write_dataset
    work = tempfile.mkdtemp(prefix="trainer_bench_")
    data_dir = os.path.join(work, "data")
    write_dataset(data_dir, num_shards=4, per_shard=64, max_seq_length=128, max_predictions_per_seq=20,
                  vocab_size=21128, seed=0)
    procs = [int(x) for x in args.procs.split(",")]
    if not have_horovod() and any(n > 1 for n in procs):
        print("horovod not installed: skipping multi-process rows (scripts/build_horovod.sh)")
        procs = [n for n in procs if n == 1]
    print(f"cpu cores: {os.cpu_count()}; seq 128, {args.steps} steps, median over steps > {args.warmup}")
    header = f"{'model':8} {'prec':5} {'procs':>5} {'global_batch':>12} {'step_s':>8} {'examples/s':>10}"
    print(header)
    rows = []
    for model in args.models.split(","):
        for precision in args.precisions.split(","):
            for n in procs:
                r = run_one(data_dir, model, precision, n, args.steps, args.batch, args.warmup, work)
                rows.append(r)
                print(f"{model:8} {precision:5} {n:>5} {r['global_batch']:>12} {r['median_step_s']:>8.3f} "
                      f"{r['examples_per_sec']:>10.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
