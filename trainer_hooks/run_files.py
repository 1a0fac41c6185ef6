"""Reading back what a run wrote: a pretraining run's vocabulary, a fine-tuning run's export.

``export``, ``finetune``, ``tflite`` and ``convert_hf`` all read these; they live here so
that none of those modules has to import another just for them (no import circle).
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from trainer_hooks import finetune_data as fd


class InitError(ValueError):
    """A run or export directory that cannot be used (message says why)."""


def read_json(path: str) -> dict:
    """The JSON object in ``path`` (UTF-8)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_vocab_file(run_args: dict) -> Optional[str]:
    """The vocabulary of a training run: its ``--vocab_file``, else the one its manifest names (when that file
    exists and matches the manifest's sha256)."""
    if run_args.get("vocab_file"):
        return run_args["vocab_file"]
    manifest = run_args.get("manifest")
    if not manifest:
        return None
    from trainer_hooks import data  # imports TensorFlow: only when a manifest must be read
    try:
        return data.manifest_vocab_file(data.load_manifest(manifest))
    except data.InputRefused:
        return None


def load_export(model_dir: str) -> dict[str, Any]:
    """The export of a fine-tuning run: ``model_dir`` itself or ``model_dir/export``."""
    export = model_dir if os.path.exists(os.path.join(model_dir, "finetune.json")) else os.path.join(model_dir,
                                                                                                     "export")
    if not os.path.exists(os.path.join(export, "finetune.json")):
        raise InitError(f"{model_dir}: no finetune.json (not a finetune output or export)")
    meta = read_json(os.path.join(export, "finetune.json"))
    return {"dir": export, "meta": meta, "labels": fd.read_labels(os.path.join(export, "labels.txt")),
            "encoder": fd.TextEncoder(os.path.join(export, "vocab.txt"), meta["max_seq_length"],
                                      do_lower_case=meta["do_lower_case"], t2s=meta["t2s"])}
