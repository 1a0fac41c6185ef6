"""TFLite size, load time and batch-1 latency of albert_tiny and a fine-tuned classifier, float vs int8.

    python bench/tflite_bench.py [--finetune_dir FT_OUT] [--lengths 32,64,128] \
        [--quantize none,float16,dynamic_int8] [--runs 100] [--threads 1] [--json OUT.json]

The encoder is ``trainer_hooks/configs/albert_config_tiny.json`` (random weights: latency and size do not depend on
their values). The classifier is ``FT_OUT`` (a ``finetune --output``), else albert_tiny with a 2-way head. Each
model is converted once per sequence length (TFLite exports have a fixed length) and quantisation; latency is
measured with one input row on this CPU. With ``FT_OUT``, the int8 accuracy change on its dev set is also shown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer_hooks import cli  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--finetune_dir", default=None)
    p.add_argument("--lengths", default="32,64,128")
    p.add_argument("--quantize", default="none,float16,dynamic_int8")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (a phone-like single core)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    cli.import_tensorflow_quietly()
    from trainer_hooks import export, finetune, tflite
    from trainer_hooks.config import ModelConfig, shipped_config
    from trainer_hooks.models import build_model

    tmp = tempfile.mkdtemp(prefix="tflite_bench_")
    cfg = ModelConfig.from_json_file(shipped_config("albert_config_tiny"))
    model = build_model("albert", cfg, seed=0)
    models = {"albert_tiny encoder": export.export_model(model, "albert", os.path.join(tmp, "encoder"))}
    if args.finetune_dir:
        models["classifier"] = os.path.join(finetune.load_export(args.finetune_dir)["dir"], "saved_model")
    else:
        clf = finetune.make_classifier(model.encoder, 2, 0.1, 0, "float32")
        os.makedirs(os.path.join(tmp, "clf"))
        models["albert_tiny classifier (2 labels)"] = finetune.export_classifier(clf, os.path.join(tmp, "clf"))
    rows = []
    for name, saved in models.items():
        for length in [int(x) for x in args.lengths.split(",")]:
            for q in args.quantize.split(","):
                path = tflite.convert(saved, os.path.join(tmp, f"{len(rows)}.tflite"), q, length)
                lat = tflite.latency(path, length, runs=args.runs, num_threads=args.threads,
                                     vocab_size=cfg.vocab_size)
                rows.append({"model": name, "seq_length": length, "quantize": q, "mb": os.path.getsize(path) / 2**20,
                             **lat})
                print(f"{name:36s} L={length:<4d} {q:13s} {rows[-1]['mb']:7.2f} MB  load {lat['load_ms']:7.1f} ms"
                      f"  p50 {lat['p50_ms']:7.2f} ms  p90 {lat['p90_ms']:7.2f} ms", flush=True)
    result = {"interpreter": tflite.interpreter_name(), "threads": args.threads, "rows": rows}
    if args.finetune_dir:
        result["dev"] = {q: tflite.export_classifier_tflite(args.finetune_dir, os.path.join(tmp, f"dev_{q}"), q, None)
                         for q in args.quantize.split(",")}
        for q, r in result["dev"].items():
            print(f"dev ({r.get('examples')} rows) {q:13s} accuracy TF {r.get('dev_accuracy_tf')} TFLite "
                  f"{r.get('dev_accuracy_tflite')} class agreement {r.get('class_agreement')} "
                  f"max |dp| {r.get('probabilities_max_abs_diff'):.2e}")
    print(f"interpreter: {result['interpreter']}, {args.threads} thread(s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
