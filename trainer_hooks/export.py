"""Export a trained encoder for fine-tuning: TF SavedModel + albert_zh/NEZHA-style config JSON + vocab.

    python -m trainer_hooks.export --model_dir OUT --output EXPORT_DIR [--checkpoint OUT/ckpt-N] [--vocab_file V]

Writes to EXPORT_DIR:
  saved_model/            endpoint ``serve(input_ids, input_mask, segment_ids)`` -> ``sequence_output``
                          [B, L, H] and ``pooled_output`` [B, H] (float32, dynamic batch and length); its
                          ``trainable_variables`` are the encoder weights, so it can be fine-tuned as a layer.
  albert_config.json      (ALBERT) or ``bert_config.json`` (NEZHA, as in the NEZHA release)
  pretraining.weights.h5  all pretraining weights, for ``build_model(...).load_weights(...)``
  vocab.txt               the run's vocabulary (``--vocab_file``, else the training run's, else its manifest's)
The export is float32 whatever precision trained it (the variables are float32 in every precision).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Optional, Sequence

from trainer_hooks import cli
from trainer_hooks.run_files import run_vocab_file

CONFIG_NAMES = {"albert": "albert_config.json", "nezha": "bert_config.json"}


def export_model(model, kind: str, output: str, vocab_file: Optional[str] = None) -> str:
    """Write ``model``'s encoder, config and (optionally) vocab to ``output``; returns the SavedModel path."""
    import keras
    import tensorflow as tf

    os.makedirs(output, exist_ok=True)
    encoder = model.encoder
    archive = keras.export.ExportArchive()
    archive.track(encoder)
    spec = tf.TensorSpec([None, None], tf.int32)

    def serve(input_ids: tf.Tensor, input_mask: tf.Tensor, segment_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        seq, pooled = encoder(input_ids, segment_ids, input_mask, training=False)
        return {"sequence_output": tf.cast(seq, tf.float32), "pooled_output": tf.cast(pooled, tf.float32)}

    archive.add_endpoint("serve", serve, input_signature=[spec, spec, spec])
    saved = os.path.join(output, "saved_model")
    archive.write_out(saved, verbose=False)
    model.config.to_json_file(os.path.join(output, CONFIG_NAMES[kind]))
    model.save_weights(os.path.join(output, "pretraining.weights.h5"))
    if vocab_file:
        shutil.copyfile(vocab_file, os.path.join(output, "vocab.txt"))
    return saved


def export_checkpoint(kind: str, config_path: str, checkpoint: str, output: str, vocab_file: Optional[str] = None,
                      max_predictions_per_seq: int = 20) -> str:
    """Rebuild the model in float32, restore its weights from a trainer checkpoint and export it."""
    import tensorflow as tf

    from trainer_hooks.config import ModelConfig
    from trainer_hooks.models import build_model
    model = build_model(kind, ModelConfig.from_json_file(config_path), dtype="float32",
                        max_predictions_per_seq=max_predictions_per_seq)
    # Only the model: optimizer slots, counters and RNG state in the checkpoint are not needed.
    tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial().assert_existing_objects_matched()
    return export_model(model, kind, output, vocab_file)


def resolve_run(args: argparse.Namespace, p: argparse.ArgumentParser) -> tuple[dict, str, str]:
    """(run_args.json contents, model kind, checkpoint) of a trainer output dir.

    Shared by ``export`` and ``convert_hf``: ``--model`` and ``--checkpoint`` win,
    else the run's own ``run_args.json`` and latest checkpoint.
    """
    import tensorflow as tf
    run_args: dict = {}
    run_args_path = os.path.join(args.model_dir, "run_args.json")
    if os.path.exists(run_args_path):
        with open(run_args_path, encoding="utf-8") as f:
            run_args = json.load(f)
    kind = args.model or run_args.get("model")
    if kind is None:
        p.error("--model is required when MODEL_DIR/run_args.json is missing")
    checkpoint = args.checkpoint or tf.train.latest_checkpoint(args.model_dir)
    if checkpoint is None:
        p.error(f"no checkpoint in {args.model_dir}")
    return run_args, kind, checkpoint


VOCAB_HELP = "default: the training run's --vocab_file, else the vocab_file its manifest names"


def build_parser() -> argparse.ArgumentParser:
    """The export CLI; ``--help`` names every default."""
    p = cli.parser("python -m trainer_hooks.export", __doc__.split("\n")[0])
    p.add_argument("--model_dir", required=True, help="trainer output dir (has model_config.json, run_args.json)")
    p.add_argument("--output", required=True, help="export directory to write")
    p.add_argument("--checkpoint", default=None, help="default: latest checkpoint in --model_dir")
    p.add_argument("--model", choices=("albert", "nezha"), default=None, help="default: from run_args.json")
    p.add_argument("--config", default=None, help="default: MODEL_DIR/model_config.json")
    p.add_argument("--vocab_file", default=None, help=VOCAB_HELP)
    p.add_argument("--tflite", action="store_true",
                   help="also write OUTPUT/model.tflite, checked against the TF model (tflite_check.json); with a "
                        "finetune --output DIR as --model_dir, the fine-tuned classifier (probabilities)")
    p.add_argument("--quantize", choices=("none", "float16", "dynamic_int8"), default="none",
                   help="TFLite weights: float32, float16, or int8 with dynamic-range activations")
    p.add_argument("--tflite_seq_length", type=int, default=None,
                   help="fixed TFLite sequence length (default: the run's max_seq_length, else 128)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    cli.import_tensorflow_quietly()
    if os.path.exists(os.path.join(args.model_dir, "export", "finetune.json")):
        # A fine-tuning output: its classifier is already exported; --tflite converts it.
        if not args.tflite:
            p.error(f"{args.model_dir} is a finetune output (its SavedModel is {args.model_dir}/export): pass --tflite")
        from trainer_hooks import tflite
        report = tflite.export_classifier_tflite(args.model_dir, args.output, args.quantize, args.tflite_seq_length)
        return _tflite_done(report, os.path.join(args.output, "model.tflite"))
    run_args, kind, checkpoint = resolve_run(args, p)
    vocab_file = args.vocab_file or run_vocab_file(run_args)
    saved = export_checkpoint(kind, args.config or os.path.join(args.model_dir, "model_config.json"), checkpoint,
                              args.output, vocab_file, run_args.get("max_predictions_per_seq", 20))
    if not vocab_file:
        print("[export] no vocab file known (pass --vocab_file): wrote no vocab.txt", file=sys.stderr)
    print(f"[export] {checkpoint} -> {saved}")
    if args.tflite:
        from trainer_hooks import tflite
        from trainer_hooks.config import ModelConfig
        cfg = ModelConfig.from_json_file(args.config or os.path.join(args.model_dir, "model_config.json"))
        report = tflite.export_encoder_tflite(args.output, args.quantize,
                                              args.tflite_seq_length or run_args.get("max_seq_length") or 128,
                                              cfg.vocab_size, run_args.get("manifest"))
        return _tflite_done(report, os.path.join(args.output, "model.tflite"))
    return 0


def _tflite_done(report: dict, path: str) -> int:
    """Print the TFLite check; exit status 1 when a float export differs from the TF model beyond tolerance."""
    shown = {k: v for k, v in report.items() if k != "ok"}
    print(f"[export] {path}: {json.dumps(shown)}")
    if not report["ok"]:
        print(f"[export] {path} differs from the TF model beyond tolerance", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
