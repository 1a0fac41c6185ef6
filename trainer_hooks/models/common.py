"""Building blocks shared by ALBERT and NEZHA: attention, feed-forward, pretraining heads.

All layers take an explicit ``dtype`` policy (``"float32"``, ``"mixed_bfloat16"``, ``"mixed_float16"``) instead of
reading Keras' global policy, so several models with different precisions can live in one process (tests).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import keras
import tensorflow as tf

from trainer_hooks.config import ModelConfig


class SeedSequence:
    """Hands out distinct, reproducible seeds in construction order.

    Keras initializers given the same integer seed produce the same tensor, so every layer needs its own seed;
    deriving them from one base seed keeps model init a pure function of ``seed`` (no global RNG).
    """

    def __init__(self, seed: int) -> None:
        self._seed = int(seed)
        self._count = 0

    def next(self) -> int:
        self._count += 1
        # Large odd multiplier spreads consecutive seeds; modulo keeps them in int32 range for TF.
        return (self._seed * 1_000_003 + self._count * 7919) % (2**31 - 1)

    def initializer(self, stddev: float) -> keras.initializers.Initializer:
        return keras.initializers.TruncatedNormal(stddev=stddev, seed=self.next())


def activation(name: str):
    """Activation by config name. ``gelu`` is the tanh approximation used by the original BERT/ALBERT code."""
    if name in ("gelu", "gelu_new"):
        return lambda x: keras.activations.gelu(x, approximate=True)
    if name == "gelu_exact":
        return lambda x: keras.activations.gelu(x, approximate=False)
    if name in ("relu", "tanh"):
        return keras.activations.get(name)
    raise ValueError(f"unsupported hidden_act {name!r}")


def attention_bias(input_mask: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """[B, L] 0/1 mask -> additive [B, 1, 1, L] bias. -10000 (not -inf) stays finite in fp16."""
    mask = tf.cast(input_mask, dtype)[:, tf.newaxis, tf.newaxis, :]
    return (1.0 - mask) * tf.cast(-10000.0, dtype)


class AttentionBlock(keras.layers.Layer):
    """Post-LN multi-head self-attention sub-layer, optionally with Shaw-style relative positions.

    With ``relative`` given ([L, L, head_size]), scores get ``q . r_ij`` and the context gets ``sum_j p_ij r_ij``
    (the same table for keys and values, as in NEZHA).
    """

    def __init__(self, config: ModelConfig, seeds: SeedSequence, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        init = config.initializer_range
        h = config.hidden_size
        self.query = keras.layers.Dense(h, kernel_initializer=seeds.initializer(init), name="query",
                                        dtype=self.dtype_policy)
        self.key = keras.layers.Dense(h, kernel_initializer=seeds.initializer(init), name="key",
                                      dtype=self.dtype_policy)
        self.value = keras.layers.Dense(h, kernel_initializer=seeds.initializer(init), name="value",
                                        dtype=self.dtype_policy)
        self.output_dense = keras.layers.Dense(h, kernel_initializer=seeds.initializer(init), name="output",
                                               dtype=self.dtype_policy)
        self.probs_dropout = keras.layers.Dropout(config.attention_probs_dropout_prob, seed=seeds.next(),
                                                  dtype=self.dtype_policy)
        self.output_dropout = keras.layers.Dropout(config.hidden_dropout_prob, seed=seeds.next(),
                                                   dtype=self.dtype_policy)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="layer_norm",
                                                          dtype=self.dtype_policy)

    def _split(self, x: tf.Tensor) -> tf.Tensor:
        b, l = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, [b, l, self.num_heads, self.head_size])
        return tf.transpose(x, [0, 2, 1, 3])  # [B, N, L, d]

    def call(self, x: tf.Tensor, bias: tf.Tensor, relative: Optional[tf.Tensor] = None,
             training: bool = False, return_scores: bool = False) -> Any:
        """The sub-layer's output; with ``return_scores`` also the float32 attention scores [B, N, L, L] before the
        mask bias and softmax (what TinyBERT's attention loss compares)."""
        q = self._split(self.query(x)) * tf.cast(1.0 / math.sqrt(self.head_size), x.dtype)
        k = self._split(self.key(x))
        v = self._split(self.value(x))
        scores = tf.einsum("bnid,bnjd->bnij", q, k)
        if relative is not None:
            rel = tf.cast(relative, q.dtype)
            scores += tf.einsum("bnid,ijd->bnij", q, rel)
        # Softmax in float32: fp16 exp overflows long before the logits look large.
        probs = tf.nn.softmax(tf.cast(scores, tf.float32) + tf.cast(bias, tf.float32), axis=-1)
        probs = self.probs_dropout(tf.cast(probs, x.dtype), training=training)
        ctx = tf.einsum("bnij,bnjd->bnid", probs, v)
        if relative is not None:
            ctx += tf.einsum("bnij,ijd->bnid", probs, rel)
        b, l = tf.shape(x)[0], tf.shape(x)[1]
        ctx = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [b, l, self.num_heads * self.head_size])
        out = self.output_dropout(self.output_dense(ctx), training=training)
        out = self.layer_norm(x + out)
        return (out, tf.cast(scores, tf.float32)) if return_scores else out


class FeedForwardBlock(keras.layers.Layer):
    """Post-LN position-wise feed-forward sub-layer."""

    def __init__(self, config: ModelConfig, seeds: SeedSequence, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        init = config.initializer_range
        self.intermediate = keras.layers.Dense(config.intermediate_size, activation=activation(config.hidden_act),
                                               kernel_initializer=seeds.initializer(init), name="intermediate",
                                               dtype=self.dtype_policy)
        self.output_dense = keras.layers.Dense(config.hidden_size, kernel_initializer=seeds.initializer(init),
                                               name="output", dtype=self.dtype_policy)
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob, seed=seeds.next(), dtype=self.dtype_policy)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="layer_norm",
                                                          dtype=self.dtype_policy)

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        out = self.dropout(self.output_dense(self.intermediate(x)), training=training)
        return self.layer_norm(x + out)


class Encoder(keras.layers.Layer):
    """Base class: subclasses implement ``call(input_ids, segment_ids, input_mask, training, output_internals)``
    returning ``(sequence_output [B, L, H], pooled_output [B, H])`` and expose ``word_embeddings`` (the [V, E]
    variable the MLM head is tied to). With ``output_internals=True`` a third element is added:
    ``{"hidden_states": [L + 1 x [B, L, H]], "attention_scores": [L x [B, N, L, L]]}``, where hidden state 0 is
    the embedding output as the first layer sees it (after any E->H projection) and state i the output of layer i
    (used by distillation)."""

    def __init__(self, config: ModelConfig, seeds: SeedSequence, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.pooler = keras.layers.Dense(config.hidden_size, activation="tanh",
                                         kernel_initializer=seeds.initializer(config.initializer_range),
                                         name="pooler", dtype=self.dtype_policy)

    @property
    def word_embeddings(self) -> keras.Variable:
        """The input embedding matrix the MLM head is tied to; each encoder defines it."""
        raise AttributeError(f"{type(self).__name__} must define word_embeddings")

    def _trackable_children(self, save_type: str = "checkpoint", **kwargs: Any) -> dict:
        # Keras 3.15 leaves layers held in Python lists (attention_blocks, ffn_blocks) out of tf.train.Checkpoint
        # (it lists them for SavedModel only), so checkpoints silently lacked every transformer layer. Name each
        # block as a child of its own; Keras' .weights.h5 saving does not use this and is unchanged.
        children = super()._trackable_children(save_type, **kwargs)
        if save_type == "checkpoint":
            for attr in ("attention_blocks", "ffn_blocks"):
                for i, block in enumerate(getattr(self, attr, ())):
                    children[f"{attr}_{i}"] = block
        return children

    def pool(self, sequence_output: tf.Tensor) -> tf.Tensor:
        return self.pooler(sequence_output[:, 0])

    def finish(self, x: tf.Tensor, hidden: list, scores: list, output_internals: bool) -> tuple:
        """``(sequence, pooled)``, plus the internals when asked for (see the class docstring)."""
        if output_internals:
            return x, self.pool(x), {"hidden_states": hidden, "attention_scores": scores}
        return x, self.pool(x)


class PretrainingModel(keras.Model):
    """Encoder + MLM head (tied to the word embeddings) + 2-way sentence head (SOP or NSP).

    ``call(features)`` takes the canonical feature dict and returns float32 ``mlm_logits`` [B, P, V] and
    ``sentence_logits`` [B, 2] plus the encoder outputs; ``output_internals=True`` adds the encoder's
    ``hidden_states`` and ``attention_scores`` (see ``Encoder``).
    """

    def __init__(self, encoder: Encoder, config: ModelConfig, seeds: SeedSequence, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.encoder = encoder
        init = config.initializer_range
        # albert_zh's MLM head transforms at width H and projects back to E through the embedding projection.
        self.project_back = config.extra.get("embedding_layout") == "albert_zh"
        self.mlm_transform = keras.layers.Dense(config.hidden_size if self.project_back else config.embedding_width,
                                                activation=activation(config.hidden_act),
                                                kernel_initializer=seeds.initializer(init), name="mlm_transform",
                                                dtype=self.dtype_policy)
        self.mlm_layer_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="mlm_layer_norm",
                                                              dtype=self.dtype_policy)
        self.mlm_bias = self.add_weight(name="mlm_output_bias", shape=(config.vocab_size,), initializer="zeros")
        self.sentence_head = keras.layers.Dense(2, kernel_initializer=seeds.initializer(init), name="sentence_head",
                                                dtype=self.dtype_policy)

    def call(self, features: dict[str, tf.Tensor], training: bool = False,
             output_internals: bool = False) -> dict[str, Any]:
        seq, pooled, *internals = self.encoder(features["input_ids"], features["segment_ids"],
                                               features["input_mask"], training=training,
                                               output_internals=output_internals)
        picked = tf.gather(seq, tf.cast(features["masked_lm_positions"], tf.int32), batch_dims=1)  # [B, P, H]
        h = self.mlm_layer_norm(self.mlm_transform(picked))
        if self.project_back:
            h = tf.einsum("bph,eh->bpe", h, tf.cast(self.encoder.embedding_projection.kernel, h.dtype))
        emb = tf.cast(self.encoder.word_embeddings, h.dtype)
        mlm_logits = tf.einsum("bpe,ve->bpv", h, emb)
        # Logits and losses in float32 so the softmax over ~21k classes is not computed in 8-bit mantissas.
        mlm_logits = tf.cast(mlm_logits, tf.float32) + tf.cast(self.mlm_bias, tf.float32)
        sentence_logits = tf.cast(self.sentence_head(pooled), tf.float32)
        out = {"mlm_logits": mlm_logits, "sentence_logits": sentence_logits,
               "sequence_output": seq, "pooled_output": pooled}
        if internals:
            out.update(internals[0])
        return out


def dummy_features(max_seq_length: int, max_predictions_per_seq: int, batch_size: int = 1) -> dict[str, tf.Tensor]:
    """All-zero canonical features, used to create the variables of a model."""
    seq = tf.zeros([batch_size, max_seq_length], tf.int64)
    pred = tf.zeros([batch_size, max_predictions_per_seq], tf.int64)
    return {"input_ids": seq, "input_mask": tf.ones_like(seq), "segment_ids": seq,
            "masked_lm_positions": pred, "masked_lm_ids": pred,
            "masked_lm_weights": tf.zeros([batch_size, max_predictions_per_seq], tf.float32),
            "next_sentence_labels": tf.zeros([batch_size, 1], tf.int64)}
