"""OCNLI dev accuracy of albert_tiny fine-tuned from random weights and from pretraining runs, and int8 TFLite.

    python bench/finetune_bench.py --train ../shared/eval/ocnli/train.3k.json --dev ../shared/eval/ocnli/dev.json \
        --work /tmp/ocnli_ft [--init RUN ...] [--epochs 5] [--lr 1e-4] [--max_seq_length 64] [--json OUT.json]

Every candidate (``none`` = random albert_tiny, then each ``--init`` run directory) is fine-tuned with the same
hyper-parameters and seed; the table shows the best epoch's dev accuracy and macro-F1, the majority-class
baseline, and for each the dev accuracy of the ``dynamic_int8`` TFLite export. OCNLI is CC BY-NC: read it from
``../shared/eval/ocnli``, never copy it into the repository.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--init", action="append", default=[], help="pretraining run directory (repeatable)")
    p.add_argument("--config", default=os.path.join(REPO, "trainer_hooks", "configs", "albert_config_tiny.json"))
    p.add_argument("--epochs", default="5")
    p.add_argument("--lr", default="1e-4")
    p.add_argument("--batch_size", default="32")
    p.add_argument("--max_seq_length", default="64")
    p.add_argument("--no_random", action="store_true", help="skip the random-init baseline")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    labels = collections.Counter()
    with open(args.dev, encoding="utf-8") as f:
        for ln in f:
            lab = json.loads(ln).get("label")
            if lab != "-":
                labels[lab] += 1
    majority = max(labels.values()) / sum(labels.values())
    inits = ([] if args.no_random else ["none"]) + args.init
    env = {**os.environ, "PYTHONPATH": REPO}
    rows = []
    for i, init in enumerate(inits):
        out = os.path.join(args.work, f"ft{i}")
        cmd = [sys.executable, "-m", "trainer_hooks.finetune", "--task", "pair", "--train", args.train, "--dev",
               args.dev, "--model", "albert", "--init", init, "--output", out, "--num_epochs", args.epochs,
               "--learning_rate", args.lr, "--batch_size", args.batch_size, "--max_seq_length", args.max_seq_length]
        if init == "none":
            cmd += ["--config", args.config]
        t0 = time.time()
        subprocess.run(cmd, cwd=REPO, env=env, check=True)
        minutes = (time.time() - t0) / 60
        with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
            m = json.load(f)
        lite = os.path.join(args.work, f"lite{i}")
        subprocess.run([sys.executable, "-m", "trainer_hooks.export", "--model_dir", out, "--output", lite,
                        "--tflite", "--quantize", "dynamic_int8"], cwd=REPO, env=env, check=True)
        with open(os.path.join(lite, "tflite_check.json"), encoding="utf-8") as f:
            lc = json.load(f)
        rows.append({"init": init, "dev_accuracy": m["dev"]["accuracy"], "dev_macro_f1": m["dev"]["macro_f1"],
                     "best_epoch": m["best_epoch"], "counts": m["counts"], "minutes": minutes,
                     "int8_dev_accuracy": lc["dev_accuracy_tflite"], "int8_class_agreement": lc["class_agreement"],
                     "int8_mb": lc["bytes"] / 2**20})
    print(f"\nOCNLI dev ({sum(labels.values())} rows with a gold label), majority class {100 * majority:.1f}")
    for r in rows:
        print(f"  init {r['init']:40s} acc {100 * r['dev_accuracy']:.1f}  macro-F1 {100 * r['dev_macro_f1']:.1f}  "
              f"best epoch {r['best_epoch']}  int8 TFLite acc {100 * r['int8_dev_accuracy']:.1f} "
              f"(agreement {100 * r['int8_class_agreement']:.1f}%, {r['int8_mb']:.1f} MB)  {r['minutes']:.1f} min")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"majority": majority, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
