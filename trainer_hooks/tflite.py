"""TFLite conversion of an exported encoder or fine-tuned classifier, and a check against the TF model.

``convert`` turns a SavedModel's ``serve(input_ids, input_mask, segment_ids)`` signature into a ``.tflite`` file
(dynamic batch and length, TFLite builtin ops only) with ``quantize``:

* ``none``: float32 weights and math;
* ``float16``: weights stored as float16 (half the file), computed in float32;
* ``dynamic_int8``: weights stored as int8 with per-channel scales, activations quantised on the fly.

The interpreter is LiteRT (``ai_edge_litert``, the ``tflite`` extra) when installed, else TensorFlow's deprecated
``tf.lite.Interpreter``; ``interpreter_name()`` says which.
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional

import numpy as np

QUANTIZE = ("none", "float16", "dynamic_int8")
INPUTS = ("input_ids", "input_mask", "segment_ids")


def convert(saved_model: str, output: str, quantize: str = "none", seq_length: int = 128) -> str:
    """Write ``output`` (.tflite) from ``saved_model``'s ``serve`` signature; returns ``output``.

    The sequence length is fixed at ``seq_length`` (inputs are padded to it; the batch stays dynamic): with a
    dynamic length the encoders' position slice needs TF's flex kernels, which mobile TFLite runtimes lack.
    """
    import tensorflow as tf

    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}, got {quantize!r}")
    loaded = tf.saved_model.load(saved_model)
    serve = loaded.signatures["serve"]
    spec = tf.TensorSpec([None, seq_length], tf.int32)

    @tf.function(input_signature=[spec, spec, spec])
    def fixed(input_ids: tf.Tensor, input_mask: tf.Tensor, segment_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return serve(input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids)

    module = tf.Module()
    module.loaded = loaded
    module.serve = fixed
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fixed.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    blob = converter.convert()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "wb") as f:
        f.write(blob)
    return output


def interpreter_name() -> str:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
        return "ai_edge_litert"
    except ImportError:
        return "tf.lite"


def load_interpreter(path: str, num_threads: Optional[int] = None) -> Any:
    """A LiteRT interpreter (or ``tf.lite.Interpreter`` without LiteRT) for ``path``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=path, num_threads=num_threads)


class Runner:
    """Runs the ``serve`` signature of a .tflite file on numpy int32 batches (resizing for each new shape)."""

    def __init__(self, path: str, num_threads: Optional[int] = None) -> None:
        self.interpreter = load_interpreter(path, num_threads)
        signatures = list(self.interpreter.get_signature_list())
        # A model converted from a concrete function names its only signature "serving_default".
        self.runner = self.interpreter.get_signature_runner("serve" if "serve" in signatures else signatures[0])

    def __call__(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> dict[str, np.ndarray]:
        return self.runner(input_ids=np.asarray(input_ids, np.int32), input_mask=np.asarray(input_mask, np.int32),
                           segment_ids=np.asarray(segment_ids, np.int32))


def tf_outputs(saved_model: str, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tensorflow as tf
    serve = tf.saved_model.load(saved_model).signatures["serve"]
    return {k: v.numpy() for k, v in serve(**{n: tf.constant(batch[n], tf.int32) for n in INPUTS}).items()}


def compare(saved_model: str, tflite_path: str, batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """Max abs difference per output between TF and TFLite on ``batch``; for ``probabilities`` also the share of
    rows whose argmax agrees."""
    ref = tf_outputs(saved_model, batch)
    got = Runner(tflite_path)(**{n: batch[n] for n in INPUTS})
    out: dict[str, Any] = {}
    for k, v in ref.items():
        out[f"{k}_max_abs_diff"] = float(np.abs(got[k] - v).max())
    if "probabilities" in ref:
        out["class_agreement"] = float(np.mean(got["probabilities"].argmax(-1) == ref["probabilities"].argmax(-1)))
    return out


def random_batch(vocab_size: int, batch: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A padded batch of random ids: row i has ``length - i`` real tokens (at least 2) and two segments."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab_size, (batch, length)).astype(np.int32)
    real = np.maximum(2, length - np.arange(batch))
    mask = (np.arange(length)[None, :] < real[:, None]).astype(np.int32)
    seg = ((np.arange(length)[None, :] >= (real // 2)[:, None]) & (mask == 1)).astype(np.int32)
    return {"input_ids": ids * mask, "input_mask": mask, "segment_ids": seg}


def latency(path: str, length: int, runs: int = 50, warmup: int = 5, num_threads: Optional[int] = None,
            vocab_size: int = 1000) -> dict[str, float]:
    """Load time and batch-1 latency percentiles (ms) of a .tflite file at sequence ``length``."""
    t0 = time.perf_counter()
    runner = Runner(path, num_threads)
    load_ms = (time.perf_counter() - t0) * 1000
    b = random_batch(vocab_size, 1, length)
    for _ in range(warmup):
        runner(**b)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        runner(**b)
        times.append((time.perf_counter() - t) * 1000)
    return {"load_ms": load_ms, "p50_ms": float(np.percentile(times, 50)), "p90_ms": float(np.percentile(times, 90))}


# ------------------------------------------------------------------------------------ export --tflite (both modes)

#: Float exports differing from the TF model by more than this fail the export (exit status 1).
FLOAT_ATOL = {"none": 1e-3, "float16": 5e-2}


def pad_to(batch: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """Cut or zero-pad every input to ``length`` columns."""
    out = {}
    for k in INPUTS:
        x = np.asarray(batch[k], np.int32)[:, :length]
        out[k] = np.pad(x, ((0, 0), (0, length - x.shape[1])))
    return out


def shard_batch(manifest_path: str, length: int, n: int = 16) -> Optional[dict[str, np.ndarray]]:
    """The first ``n`` pretraining instances of a run's shards (real inputs for the encoder check), or None."""
    import tensorflow as tf

    from trainer_hooks import data
    try:
        m = data.load_manifest(manifest_path)
    except (data.InputRefused, OSError, ValueError):
        return None
    spec = {k: tf.io.FixedLenFeature([m.max_seq_length], tf.int64) for k in INPUTS}
    ds = tf.data.TFRecordDataset([s.path for s in m.shards], compression_type=m.compression_type)
    rows = [tf.io.parse_single_example(r, spec) for r in ds.take(n)]
    if not rows:
        return None
    return pad_to({k: np.stack([r[k].numpy() for r in rows]) for k in INPUTS}, length)


def check_encoder(saved_model: str, path: str, quantize: str, batch: dict[str, np.ndarray]) -> dict[str, Any]:
    res = compare(saved_model, path, batch)
    res.update(quantize=quantize, examples=int(batch["input_ids"].shape[0]), bytes=os.path.getsize(path))
    diff = max(v for k, v in res.items() if k.endswith("_max_abs_diff"))
    res["ok"] = quantize not in FLOAT_ATOL or diff <= FLOAT_ATOL[quantize]
    return res


def classifier_dev_check(saved_model: str, path: str, quantize: str, dev: Any) -> dict[str, Any]:
    """TF vs TFLite on the fine-tuning dev set: max abs difference of probabilities, class agreement, and the
    accuracy of each (the int8 accuracy change)."""
    batch = {"input_ids": dev.input_ids, "input_mask": dev.input_mask, "segment_ids": dev.segment_ids}
    ref, got = [], []
    runner = Runner(path)
    import tensorflow as tf
    serve = tf.saved_model.load(saved_model).signatures["serve"]
    for i in range(0, len(dev), 64):
        part = {k: v[i:i + 64] for k, v in batch.items()}
        ref.append(serve(**{k: tf.constant(v) for k, v in part.items()})["probabilities"].numpy())
        got.append(runner(**part)["probabilities"])
    r, g = np.concatenate(ref), np.concatenate(got)
    acc_tf = float(np.mean(r.argmax(-1) == dev.labels))
    acc_lite = float(np.mean(g.argmax(-1) == dev.labels))
    diff = float(np.abs(r - g).max())
    return {"quantize": quantize, "examples": len(dev), "bytes": os.path.getsize(path),
            "probabilities_max_abs_diff": diff, "class_agreement": float(np.mean(r.argmax(-1) == g.argmax(-1))),
            "dev_accuracy_tf": acc_tf, "dev_accuracy_tflite": acc_lite, "dev_accuracy_change": acc_lite - acc_tf,
            "ok": quantize not in FLOAT_ATOL or diff <= FLOAT_ATOL[quantize]}


def export_classifier_tflite(finetune_dir: str, output: str, quantize: str, seq_length: Optional[int]) -> dict:
    """``model.tflite`` + what ``finetune predict`` needs (labels, vocab, finetune.json) from a finetune output,
    checked on its dev set."""
    import json
    import shutil

    from trainer_hooks import finetune_data as fd
    from trainer_hooks.run_files import load_export
    ex = load_export(finetune_dir)
    meta = dict(ex["meta"])
    length = seq_length or meta["max_seq_length"]
    os.makedirs(output, exist_ok=True)
    path = convert(os.path.join(ex["dir"], "saved_model"), os.path.join(output, "model.tflite"), quantize, length)
    for name in ("labels.txt", "vocab.txt"):
        shutil.copyfile(os.path.join(ex["dir"], name), os.path.join(output, name))
    meta.update(max_seq_length=length, tflite_quantize=quantize)
    with open(os.path.join(output, "finetune.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    args_path = os.path.join(finetune_dir, "finetune_args.json")
    report: dict = {"quantize": quantize, "seq_length": length, "bytes": os.path.getsize(path),
                    "interpreter": interpreter_name()}
    if os.path.exists(args_path):
        with open(args_path, encoding="utf-8") as f:
            fa = json.load(f)
        if fa.get("dev") and os.path.exists(fa["dev"]):
            encoder = fd.TextEncoder(os.path.join(ex["dir"], "vocab.txt"), length, meta["do_lower_case"],
                                     meta["t2s"])
            rows = fd.read_rows(fa["dev"], fa.get("format", "auto"), meta["task"], fd.CounterDict())
            dev = fd.encode_rows(rows, encoder, ex["labels"], fd.CounterDict())
            report.update(classifier_dev_check(os.path.join(ex["dir"], "saved_model"), path, quantize, dev))
            report["checked_on"] = fa["dev"]
    if "checked_on" not in report:
        batch = random_batch(len(ex["encoder"].tokenizer), 8, length)
        report.update(check_encoder(os.path.join(ex["dir"], "saved_model"), path, quantize, batch))
        report["checked_on"] = "random ids (the fine-tuning dev file is not available)"
    with open(os.path.join(output, "tflite_check.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return report


def export_encoder_tflite(export_dir: str, quantize: str, seq_length: int, vocab_size: int,
                          manifest: Optional[str]) -> dict:
    """``model.tflite`` next to an encoder export's ``saved_model/``, checked on the run's first shard records."""
    import json
    saved = os.path.join(export_dir, "saved_model")
    path = convert(saved, os.path.join(export_dir, "model.tflite"), quantize, seq_length)
    batch = shard_batch(manifest, seq_length) if manifest else None
    where = f"the first records of {manifest}" if batch is not None else "random ids (no readable manifest)"
    if batch is None:
        batch = random_batch(vocab_size, 8, seq_length)
    report = {"seq_length": seq_length, "interpreter": interpreter_name(), "checked_on": where,
              **check_encoder(saved, path, quantize, batch)}
    with open(os.path.join(export_dir, "tflite_check.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return report
