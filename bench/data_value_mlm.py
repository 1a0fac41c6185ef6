"""Measurements on shards and pretraining runs for ``bench/data_value.py``.

- ``shard_tokens``: instances and non-padding tokens (``input_mask`` ones, [CLS]/[SEP] included) of a build.
- ``replay_tokens``: the tokens a one-process ``trainer_hooks.pretrain`` run actually read in its first N steps,
  by replaying its input stream (``data.make_dataset`` is deterministic for fixed arguments).
- ``mlm_accuracy``: masked-LM accuracy and loss of a run (pretraining or distillation run directory) on every
  instance of an evaluation build, with the binomial standard error of the accuracy.
- ``train_flops``: an estimate of the forward FLOPs per instance of a model config, to give a student trained
  from scratch the same compute as a distillation run (teacher forward + student training).
"""

from __future__ import annotations

import glob
import json
import math
import os
from typing import Any

from trainer_hooks.cli import import_tensorflow_quietly

tf = import_tensorflow_quietly()

from trainer_hooks import data  # noqa: E402
from trainer_hooks.config import ModelConfig  # noqa: E402


def _shards(build_dir: str) -> tuple[data.Manifest, list[data.Shard]]:
    manifest = data.load_manifest(os.path.join(build_dir, "manifest.json"))
    return manifest, data.resolve_shards(os.path.join(build_dir, "tfrecords", "*"), manifest)


def _batches(manifest: data.Manifest, shards: list[data.Shard], batch: int) -> Any:
    """Every record once, in file order, the last batch short (``make_dataset`` drops it)."""
    ds = tf.data.TFRecordDataset([s.path for s in shards], compression_type=manifest.compression_type)
    feats = data.parsing_features(manifest)
    return ds.batch(batch).map(lambda s: tf.io.parse_example(s, feats)).prefetch(2)


def shard_tokens(build_dir: str) -> dict[str, Any]:
    """``{"instances", "tokens", "tokens_per_instance", "masked"}`` over every shard of a build."""
    manifest, shards = _shards(build_dir)
    n = tokens = masked = 0
    for f in _batches(manifest, shards, 1024):
        n += int(f["input_mask"].shape[0])
        tokens += int(tf.reduce_sum(f["input_mask"]))
        masked += int(tf.reduce_sum(tf.cast(f["masked_lm_weights"] > 0, tf.int64)))
    if n != sum(s.count for s in shards):
        raise RuntimeError(f"{build_dir}: read {n} records, the manifest lists {sum(s.count for s in shards)}")
    return {"instances": n, "tokens": tokens, "tokens_per_instance": tokens / max(n, 1), "masked": masked}


def replay_tokens(build_dir: str, steps: int, batch: int, seed: int) -> int:
    """Non-padding tokens in the first ``steps`` batches a one-process pretrain run with ``--seed seed`` and the
    default ``--shuffle_buffer``/``--cycle_length`` reads (its stream is a pure function of these)."""
    manifest, shards = _shards(build_dir)
    args = data_defaults()
    ds = data.make_dataset(manifest, shards, batch, seed=seed, shuffle_buffer=args["shuffle_buffer"],
                           cycle_length=args["cycle_length"])
    total = 0
    for f in ds.take(steps):
        total += int(tf.reduce_sum(f["input_mask"]))
    return total


def data_defaults() -> dict[str, int]:
    """The pretrain CLI's input-stream defaults (read from its parser, so a changed default is followed)."""
    from trainer_hooks.pretrain import build_parser
    p = build_parser()
    return {"shuffle_buffer": p.get_default("shuffle_buffer"), "cycle_length": p.get_default("cycle_length")}


def mlm_accuracy(run_dir: str, kind: str, eval_dir: str, batch: int = 64) -> dict[str, Any]:
    """Masked-LM accuracy, loss and counts of ``run_dir``'s latest checkpoint on every instance of ``eval_dir``."""
    from trainer_hooks.models import build_model
    from trainer_hooks.pretrain import load_init_checkpoint
    manifest, shards = _shards(eval_dir)
    config = ModelConfig.from_json_file(os.path.join(run_dir, "model_config.json"))
    model = build_model(kind, config, seed=0, max_predictions_per_seq=manifest.max_predictions_per_seq)
    ckpt = load_init_checkpoint(model, run_dir)

    @tf.function(autograph=False)
    def score(f: dict) -> tuple:
        logits = model(f, training=False)["mlm_logits"]
        ids = f["masked_lm_ids"]
        w = tf.cast(f["masked_lm_weights"], tf.float32)
        hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=ids.dtype), ids), tf.float32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=logits)
        return tf.reduce_sum(hit * w), tf.reduce_sum(ce * w), tf.reduce_sum(w)

    hits = loss = weight = 0.0
    n = 0
    for f in _batches(manifest, shards, batch):
        h, c, w = score(f)
        hits, loss, weight = hits + float(h), loss + float(c), weight + float(w)
        n += int(f["input_ids"].shape[0])
    acc = hits / weight
    return {"checkpoint": ckpt, "instances": n, "masked": int(round(weight)), "mlm_accuracy": acc,
            "mlm_accuracy_se": math.sqrt(acc * (1 - acc) / weight), "mlm_loss": loss / weight}


def forward_flops(config: ModelConfig, seq: int, predictions: int) -> float:
    """Multiply-add FLOPs (x2) of one instance's forward pass: encoder layers, E->H projection, MLM head.

    Per token and layer: Q, K, V and output projections (4 H^2), the feed-forward (2 H I), attention scores and
    context (2 seq H). The MLM head runs on the ``predictions`` masked positions only: transform H->E and logits
    E->V. Embedding lookups, LayerNorms, softmax and the sentence head are left out (a few percent)."""
    h, i, e, v = config.hidden_size, config.intermediate_size, config.embedding_width, config.vocab_size
    layer = 4 * h * h + 2 * h * i + 2 * seq * h
    per_token = config.num_hidden_layers * layer + (e * h if e != h else 0)
    head = h * e + e * v
    return 2.0 * (seq * per_token + predictions * head)


def load_config(path: str) -> ModelConfig:
    with open(path, encoding="utf-8") as f:
        return ModelConfig.from_dict(json.load(f))


def latest_step(run_dir: str) -> int:
    """Step of the latest ``ckpt-N`` in ``run_dir`` (0 if none)."""
    steps = [int(p.rsplit("-", 1)[1].split(".")[0]) for p in glob.glob(os.path.join(run_dir, "ckpt-*.index"))]
    return max(steps, default=0)
