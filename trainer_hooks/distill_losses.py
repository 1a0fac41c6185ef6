"""Distillation losses (TinyBERT general distillation) and the parsing of ``--layer_map`` / ``--loss_weights``.

Layers are numbered as in TinyBERT: 0 is the embedding output (what the first transformer layer sees), 1..S the
student's layers, 1..T the teacher's. A layer map is a list of (student layer, teacher layer) pairs; the pair
(0, 0) drives the embedding loss, every pair with a student layer >= 1 the hidden-state and attention losses.
"""

from __future__ import annotations

import math
from typing import Optional

import keras
import tensorflow as tf

LOSSES = ("emb", "hidden", "attn", "logits", "mlm")
DEFAULT_LOSS_WEIGHTS = "emb=1,hidden=1,attn=1,logits=1"


class MapError(ValueError):
    """A ``--layer_map`` or ``--loss_weights`` value that cannot be used (message says why, one line)."""


def parse_loss_weights(text: str) -> dict[str, float]:
    """``emb=1,hidden=1,attn=1,logits=1`` -> weights of every loss in ``LOSSES`` (unnamed ones are 0).

    ``mlm`` is the student's own masked-LM cross-entropy on the shards' labels (0 unless given).
    """
    weights = {k: 0.0 for k in LOSSES}
    seen = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in weights:
            raise MapError(f"--loss_weights: {part!r} is not NAME=WEIGHT with NAME one of {', '.join(LOSSES)}")
        if key in seen:
            raise MapError(f"--loss_weights: {key} is given twice")
        seen.add(key)
        try:
            w = float(value)
        except ValueError:
            raise MapError(f"--loss_weights: weight {value!r} of {key} is not a number") from None
        if not math.isfinite(w) or w < 0:
            raise MapError(f"--loss_weights: weight of {key} must be finite and >= 0, got {value}")
        weights[key] = w
    if not any(weights.values()):
        raise MapError("--loss_weights: every weight is 0, nothing to train")
    return weights


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """TinyBERT's uniform map: (0, 0) and student layer i -> teacher layer i*T/S (rounded up when S does not
    divide T, so every student layer has a teacher layer >= 1 and the last layers always meet)."""
    return [(0, 0)] + [(i, -(-i * teacher_layers // student_layers)) for i in range(1, student_layers + 1)]


def parse_layer_map(text: str, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """``uniform`` or ``i:j,...`` -> sorted (student, teacher) pairs; anything out of range is refused.

    An explicit map without ``0:0`` has no embedding pair (the embedding loss then needs it: see ``check_plan``).
    """
    if text.strip() == "uniform":
        return uniform_layer_map(student_layers, teacher_layers)
    pairs: dict[int, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        a, sep, b = part.partition(":")
        try:
            i, j = int(a), int(b)
        except ValueError:
            raise MapError(f"--layer_map: {part!r} is not STUDENT:TEACHER (integers), nor is the map 'uniform'") \
                from None
        if not sep:
            raise MapError(f"--layer_map: {part!r} is not STUDENT:TEACHER")
        if not 0 <= i <= student_layers:
            raise MapError(f"--layer_map: student layer {i} in {part!r} is out of range 0..{student_layers} "
                           f"(the student has {student_layers} layers; 0 is the embedding output)")
        if not 0 <= j <= teacher_layers:
            raise MapError(f"--layer_map: teacher layer {j} in {part!r} is out of range 0..{teacher_layers} "
                           f"(the teacher has {teacher_layers} layers; 0 is the embedding output)")
        if (i == 0) != (j == 0):
            raise MapError(f"--layer_map: {part!r} pairs an embedding output (layer 0) with a transformer layer; "
                           "0 maps only to 0")
        if i in pairs:
            raise MapError(f"--layer_map: student layer {i} is mapped twice")
        pairs[i] = j
    if not pairs:
        raise MapError("--layer_map is empty: give 'uniform' or STUDENT:TEACHER pairs")
    return sorted(pairs.items())


def check_plan(layer_map: list[tuple[int, int]], weights: dict[str, float]) -> None:
    """Refuse weights whose loss the map gives nothing to compare."""
    if weights["emb"] and (0, 0) not in layer_map:
        raise MapError("--loss_weights emb > 0 but --layer_map has no 0:0 pair (add it or set emb=0)")
    if (weights["hidden"] or weights["attn"]) and not any(i > 0 for i, _ in layer_map):
        raise MapError("--loss_weights hidden/attn > 0 but --layer_map maps no student layer >= 1")


class Projections(keras.layers.Layer):
    """Learned maps from the student's hidden width to the teacher's: W_e for the embedding output and one W_h
    shared by all mapped layers (TinyBERT). Present only when the widths differ and the loss is on."""

    def __init__(self, student_width: int, teacher_width: int, embedding: bool, hidden: bool, seed: int,
                 initializer_range: float = 0.02, **kwargs) -> None:
        super().__init__(name="distill_projections", **kwargs)
        differ = student_width != teacher_width

        def dense(name: str, offset: int) -> Optional[keras.layers.Dense]:
            init = keras.initializers.TruncatedNormal(stddev=initializer_range, seed=seed * 7 + offset)
            return keras.layers.Dense(teacher_width, kernel_initializer=init, name=name, dtype=self.dtype_policy)

        self.embedding = dense("embedding", 1) if differ and embedding else None
        self.hidden = dense("hidden", 2) if differ and hidden else None
        for layer in (self.embedding, self.hidden):
            if layer is not None:
                layer.build((None, None, student_width))

    def call(self, x: tf.Tensor, which: str) -> tf.Tensor:
        layer = self.embedding if which == "embedding" else self.hidden
        return x if layer is None else layer(x)


def masked_mse(student: tf.Tensor, teacher: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean squared difference of [B, L, H] states over the real (mask 1) tokens and all H units."""
    sq = tf.reduce_mean(tf.square(tf.cast(student, tf.float32) - tf.cast(teacher, tf.float32)), -1)
    return tf.reduce_sum(sq * mask) / (tf.reduce_sum(mask) + 1e-9)


def attention_mse(student: tf.Tensor, teacher: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """MSE of [B, N, L, L] attention scores over real query and key positions (padding is never compared).

    With different head counts the scores are averaged over heads first (TinyBERT itself needs equal counts).
    """
    if student.shape[1] != teacher.shape[1]:
        student = tf.reduce_mean(student, 1, keepdims=True)
        teacher = tf.reduce_mean(teacher, 1, keepdims=True)
    pair = mask[:, tf.newaxis, :, tf.newaxis] * mask[:, tf.newaxis, tf.newaxis, :]  # [B, 1, L, L]
    sq = tf.square(student - teacher) * pair
    heads = tf.cast(tf.shape(student)[1], tf.float32)
    return tf.reduce_sum(sq) / (tf.reduce_sum(pair) * heads + 1e-9)


def soft_cross_entropy(student_logits: tf.Tensor, teacher_logits: tf.Tensor, weights: tf.Tensor,
                       temperature: float) -> tf.Tensor:
    """Cross-entropy of the student's softened MLM distribution against the teacher's, at the masked positions
    (``masked_lm_weights``), both divided by ``temperature`` (TinyBERT's prediction-layer loss; no T^2)."""
    return _soft_ce_and_kl(student_logits, teacher_logits, weights, temperature)[0]


def _soft_ce_and_kl(student_logits: tf.Tensor, teacher_logits: tf.Tensor, weights: tf.Tensor,
                    temperature: float) -> tuple[tf.Tensor, tf.Tensor]:
    """The soft cross-entropy and the KL divergence (the cross-entropy less the teacher's entropy, which the
    student cannot change: 0 when the two distributions agree)."""
    log_t = tf.nn.log_softmax(teacher_logits / temperature, -1)
    t = tf.exp(log_t)
    ce = -tf.reduce_sum(t * tf.nn.log_softmax(student_logits / temperature, -1), -1)
    entropy = -tf.reduce_sum(t * log_t, -1)
    denom = tf.reduce_sum(weights) + 1e-5
    return tf.reduce_sum(ce * weights) / denom, tf.reduce_sum((ce - entropy) * weights) / denom


def distill_losses(student: dict, teacher: dict, features: dict, layer_map: list[tuple[int, int]],
                   weights: dict[str, float], temperature: float, projections: Projections) -> dict:
    """Every enabled loss, their weighted sum (``loss``) and MLM accuracies of student and teacher."""
    mask = tf.cast(features["input_mask"], tf.float32)
    lm_weights = tf.cast(features["masked_lm_weights"], tf.float32)
    out: dict[str, tf.Tensor] = {}
    layers = [(i, j) for i, j in layer_map if i > 0]
    if weights["emb"]:
        out["emb_loss"] = masked_mse(projections(student["hidden_states"][0], which="embedding"),
                                     teacher["hidden_states"][0], mask)
    if weights["hidden"]:
        out["hidden_loss"] = tf.add_n([masked_mse(projections(student["hidden_states"][i], which="hidden"),
                                                  teacher["hidden_states"][j], mask) for i, j in layers])
    if weights["attn"]:
        out["attn_loss"] = tf.add_n([attention_mse(student["attention_scores"][i - 1],
                                                   teacher["attention_scores"][j - 1], mask) for i, j in layers])
    if weights["logits"]:
        out["logits_loss"], kl = _soft_ce_and_kl(student["mlm_logits"], teacher["mlm_logits"], lm_weights,
                                                 temperature)
    ids = features["masked_lm_ids"]
    if weights["mlm"]:
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=student["mlm_logits"])
        out["mlm_loss"] = tf.reduce_sum(ce * lm_weights) / (tf.reduce_sum(lm_weights) + 1e-5)
    out["loss"] = tf.add_n([weights[k.rsplit("_", 1)[0]] * v for k, v in out.items()])
    if weights["logits"]:
        out["logits_kl"] = kl  # logged, not optimised (the same gradient as the cross-entropy)
    denom = tf.reduce_sum(lm_weights) + 1e-5
    for name, logits in (("mlm_accuracy", student["mlm_logits"]), ("teacher_mlm_accuracy", teacher["mlm_logits"])):
        hit = tf.cast(tf.equal(tf.argmax(logits, -1), ids), tf.float32)
        out[name] = tf.reduce_sum(hit * lm_weights) / denom
    return out
