"""Distillation on CPU: teacher+student throughput and peak RSS, student size and inference speed vs the teacher.

    nice -n 19 .venv/bin/python bench/distill_bench.py [--teacher_config bert_base] [--student tinybert_4l_312] \
        [--steps 8] [--warmup 2] [--batch 16] [--precisions fp32,bf16] [--json OUT.json]

The teacher is BERT-base-shaped (12 x 768, 12 heads, FFN 3072, as ``--model albert`` without sharing, E = H) with
random weights, written as a run directory; the student is a shipped config (default TinyBERT-4L-312). Both use the
21,128-token vocab; the shards are synthetic (seq 128, 20 predictions). Each distillation is a separate
``python -m trainer_hooks.distill`` process under ``/usr/bin/time``: examples/s = batch / median step time after
``--warmup`` steps (tracing), peak RSS = the process's maximum resident set. For reference the student alone is
pretrained the same way. Then teacher and student are exported (``trainer_hooks.export``) and compared: parameters,
SavedModel size on disk, and the SavedModel's ``serve`` at seq 128: batch-1 latency (median of 20 calls) and
batch-16 throughput (median of 5 calls).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

BERT_BASE = {"attention_probs_dropout_prob": 0.1, "embedding_size": 768, "hidden_act": "gelu",
             "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
             "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12, "share_type": "none",
             "type_vocab_size": 2, "vocab_size": 21128}


def write_teacher(path: str, config: dict, vocab_file: str) -> None:
    """A run directory (ckpt-0, model_config.json, run_args.json) holding a randomly initialised model."""
    import tensorflow as tf

    from trainer_hooks.config import ModelConfig
    from trainer_hooks.models import build_model
    cfg = ModelConfig.from_dict(config)
    model = build_model("albert", cfg, seed=7)
    os.makedirs(path, exist_ok=True)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), path, max_to_keep=1).save(checkpoint_number=0)
    cfg.to_json_file(os.path.join(path, "model_config.json"))
    with open(os.path.join(path, "run_args.json"), "w") as f:
        json.dump({"model": "albert", "vocab_file": vocab_file, "max_predictions_per_seq": 20}, f)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` under /usr/bin/time; (wall seconds, peak RSS in MB)."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return wall, rss_kb / 1024


def train_row(what: str, cmd: list[str], model_dir: str, batch: int, warmup: int) -> dict:
    wall, rss = timed(cmd)
    with open(os.path.join(model_dir, "train_log.jsonl")) as f:
        log = [json.loads(line) for line in f]
    step = statistics.median(r["step_time_s"] for r in log[warmup:])
    return {"run": what, "median_step_s": round(step, 3), "examples_per_sec": round(batch / step, 2),
            "first_step_s": round(log[0]["step_time_s"], 1), "peak_rss_mb": round(rss), "wall_s": round(wall, 1)}


def inference_row(name: str, export_dir: str, params: int) -> dict:
    import numpy as np
    import tensorflow as tf
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(export_dir, "saved_model"))
               for f in fs)
    serve = tf.saved_model.load(os.path.join(export_dir, "saved_model"))
    rng = np.random.default_rng(0)
    out = {"model": name, "parameters": params, "saved_model_mb": round(size / 2 ** 20, 1)}
    for batch, calls in ((1, 20), (16, 5)):
        ids = tf.constant(rng.integers(5, 21128, (batch, 128)), tf.int32)
        mask, seg = tf.ones_like(ids), tf.zeros_like(ids)
        serve.serve(ids, mask, seg)  # trace and warm up
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            serve.serve(ids, mask, seg)["sequence_output"].numpy()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        if batch == 1:
            out["batch1_latency_ms"] = round(1000 * med, 1)
        else:
            out["batch16_examples_per_sec"] = round(batch / med, 1)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--student", default="tinybert_4l_312", help="a config in trainer_hooks/configs")
    p.add_argument("--teacher_layers", type=int, default=12, help="layers of the BERT-base-shaped teacher")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    from trainer_hooks.config import ModelConfig, shipped_config
    from trainer_hooks.export import export_checkpoint
    from trainer_hooks.synthetic import write_dataset
    work = tempfile.mkdtemp(prefix="distill_bench_")
    data_dir = os.path.join(work, "data")
    write_dataset(data_dir, num_shards=2, per_shard=64, max_seq_length=128, max_predictions_per_seq=20,
                  vocab_size=21128, seed=0)
    teacher = os.path.join(work, "teacher")
    write_teacher(teacher, {**BERT_BASE, "num_hidden_layers": args.teacher_layers},
                  os.path.join(data_dir, "vocab.txt"))
    student_cfg = shipped_config(args.student)
    common = ["--input", os.path.join(data_dir, "tfrecords", "*"),
              "--manifest", os.path.join(data_dir, "manifest.json"), "--num_train_steps", str(args.steps), "--train_batch_size", str(args.batch), "--learning_rate", "1e-4",
              "--save_checkpoints_steps", str(10 ** 9), "--progress_every", str(10 ** 9)]
    print(f"cpu cores: {os.cpu_count()}; teacher {args.teacher_layers} x 768 (random) -> student {args.student}; "
          f"seq 128, batch {args.batch}, {args.steps} steps, median over steps > {args.warmup}", flush=True)
    results: dict = {"training": [], "inference": []}
    for precision in args.precisions.split(","):
        for what in ("distill", "student_pretrain"):
            model_dir = os.path.join(work, f"{what}_{precision}")
            if what == "distill":
                cmd = [sys.executable, "-m", "trainer_hooks.distill", "--teacher", teacher, "--student_config",
                       student_cfg, "--model_dir", model_dir, *common, "--precision", precision]
            else:
                cmd = [sys.executable, "-m", "trainer_hooks.pretrain", "--model", "albert", "--config", student_cfg,
                       "--model_dir", model_dir, *common, "--precision", precision]
            row = {"precision": precision, **train_row(what, cmd, model_dir, args.batch, args.warmup)}
            results["training"].append(row)
            print(json.dumps(row), flush=True)
    import tensorflow as tf

    from trainer_hooks.models.albert import albert_parameter_count
    first = args.precisions.split(",")[0]
    for name, run_dir in (("teacher", teacher), ("student", os.path.join(work, f"distill_{first}"))):
        out = os.path.join(work, f"export_{name}")
        config = os.path.join(run_dir, "model_config.json")
        export_checkpoint("albert", config, tf.train.latest_checkpoint(run_dir), out, None, 20)
        row = inference_row(name, out, albert_parameter_count(ModelConfig.from_json_file(config)))
        results["inference"].append(row)
        print(json.dumps(row), flush=True)
    t, s = results["inference"]
    results["ratios"] = {"parameters": round(t["parameters"] / s["parameters"], 1),
                         "saved_model_mb": round(t["saved_model_mb"] / s["saved_model_mb"], 1),
                         "batch1_latency": round(t["batch1_latency_ms"] / s["batch1_latency_ms"], 1),
                         "batch16_throughput": round(s["batch16_examples_per_sec"] / t["batch16_examples_per_sec"], 1)}
    print(json.dumps({"teacher_over_student": results["ratios"]}), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
