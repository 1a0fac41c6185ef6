"""Small synthetic shards + manifest in the pipeline's layout, for tests and the benchmark.

Not pretraining data: random (seeded) or patterned token ids from a toy vocabulary, encoded with the canonical
feature names so the trainer's plumbing can be exercised without running the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from trainer_hooks.data import feature_spec

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)


def write_vocab(path: str, vocab_size: int) -> str:
    """Write a toy vocab.txt (special tokens, then ``tok5``...) and return its sha256."""
    tokens = SPECIAL + [f"tok{i}" for i in range(len(SPECIAL), vocab_size)]
    blob = ("\n".join(tokens) + "\n").encode("utf-8")
    with open(path, "wb") as f:
        f.write(blob)
    return hashlib.sha256(blob).hexdigest()


def make_instance(rng: np.random.Generator, max_seq_length: int, max_predictions_per_seq: int, vocab_size: int,
                  patterned: bool = False, token_boundary: bool = False) -> dict[str, list]:
    """One masked, SOP-labelled instance. ``patterned`` makes segments runs of consecutive ids, so both the
    masked tokens (from their neighbours) and the segment order are learnable."""
    n_tokens = max_seq_length - 3
    len_a = int(rng.integers(1, n_tokens))
    len_b = int(rng.integers(1, n_tokens - len_a + 1))
    span = vocab_size - len(SPECIAL)
    if patterned:
        start = int(rng.integers(0, span))
        run = [len(SPECIAL) + (start + i) % span for i in range(len_a + len_b)]
        seg_a, seg_b = run[:len_a], run[len_a:]
    else:
        seg_a = rng.integers(len(SPECIAL), vocab_size, len_a).tolist()
        seg_b = rng.integers(len(SPECIAL), vocab_size, len_b).tolist()
    swapped = int(rng.integers(0, 2))
    if swapped:  # SOP: 1 means the two segments are in the wrong order
        seg_a, seg_b = seg_b, seg_a
    ids = [CLS] + seg_a + [SEP] + seg_b + [SEP]
    segments = [0] * (len(seg_a) + 2) + [1] * (len(seg_b) + 1)
    candidates = [i for i, t in enumerate(ids) if t not in (CLS, SEP)]
    n_pred = min(max_predictions_per_seq, max(1, int(round(0.15 * len(candidates)))))
    positions = sorted(rng.choice(candidates, n_pred, replace=False).tolist())
    labels = [ids[p] for p in positions]
    masked = list(ids)
    for p in positions:
        masked[p] = MASK
    pad = max_seq_length - len(ids)
    pad_p = max_predictions_per_seq - n_pred
    inst = {
        "input_ids": masked + [PAD] * pad,
        "input_mask": [1] * len(ids) + [0] * pad,
        "segment_ids": segments + [0] * pad,
        "masked_lm_positions": positions + [0] * pad_p,
        "masked_lm_ids": labels + [0] * pad_p,
        "masked_lm_weights": [1.0] * n_pred + [0.0] * pad_p,
        "next_sentence_labels": [swapped],
    }
    if token_boundary:
        # As the pipeline writes it: 1 at each word's first token, 0 inside words and on [CLS]/[SEP]; the
        # first token of each segment starts a word. Word lengths here are random (1-3 tokens mostly).
        seg_starts = {1, len(seg_a) + 2}
        inst["token_boundary"] = [0 if t in (CLS, SEP) else int(i in seg_starts or rng.random() < 0.6)
                                  for i, t in enumerate(ids)] + [0] * pad
    return inst


def to_example(inst: dict[str, list], spec: dict[str, tuple[str, list[int]]]) -> bytes:
    feats = {}
    for name, (dtype, _) in spec.items():
        if dtype == "float32":
            feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=inst[name]))
        else:
            feats[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=inst[name]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def write_dataset(root: str, num_shards: int = 2, per_shard: int = 8, max_seq_length: int = 16,
                  max_predictions_per_seq: int = 4, vocab_size: int = 40, seed: int = 0, patterned: bool = False,
                  token_boundary: bool = False, compression: str = "", absolute_paths: bool = False,
                  repeat_instances: Optional[int] = None, pair_task: str = "sop") -> dict:
    """Write ``root/tfrecords/part-*.tfrecord``, ``root/vocab.txt`` and ``root/manifest.json``.

    ``repeat_instances=k`` cycles through only k distinct instances (for overfitting tests).
    Returns the manifest dict.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "tfrecords"), exist_ok=True)
    vocab_sha = write_vocab(os.path.join(root, "vocab.txt"), vocab_size)
    spec = feature_spec(max_seq_length, max_predictions_per_seq, token_boundary=token_boundary)
    distinct = [make_instance(rng, max_seq_length, max_predictions_per_seq, vocab_size, patterned, token_boundary)
                for _ in range(repeat_instances or num_shards * per_shard)]
    options = tf.io.TFRecordOptions(compression_type=compression or None)
    shards = []
    n = 0
    for s in range(num_shards):
        name = f"part-{s:05d}-of-{num_shards:05d}.tfrecord" + (".gz" if compression else "")
        path = os.path.join(root, "tfrecords", name)
        with tf.io.TFRecordWriter(path, options=options) as w:
            for _ in range(per_shard):
                w.write(to_example(distinct[n % len(distinct)], spec))
                n += 1
        shards.append({"file": os.path.abspath(path) if absolute_paths else name, "count": per_shard})
    manifest = {"tfrecords": {
        "max_seq_length": max_seq_length, "max_predictions_per_seq": max_predictions_per_seq,
        "vocab_file": os.path.abspath(os.path.join(root, "vocab.txt")), "vocab_sha256": vocab_sha,
        "vocab_size": vocab_size, "num_instances": n, "shards": shards,
        "feature_spec": {k: {"dtype": d, "shape": list(s)} for k, (d, s) in spec.items()},
        "masked_lm_prob": 0.15, "masking": {"strategy": "token"}, "pair_task": pair_task, "seed": seed,
        "token_boundary": token_boundary, "compression": compression.upper(),
    }}
    with open(os.path.join(root, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def tiny_config(kind: str, vocab_size: int = 40, max_position_embeddings: int = 16, **overrides) -> dict:
    """A config dict small enough for CPU unit tests."""
    cfg = {"vocab_size": vocab_size, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 64, "max_position_embeddings": max_position_embeddings, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "type_vocab_size": 2,
           "initializer_range": 0.02}
    if kind == "albert":
        cfg.update(embedding_size=16, share_type="all")
    else:
        cfg.update(use_relative_position=True, max_relative_position=8)
    cfg.update(overrides)
    return cfg
