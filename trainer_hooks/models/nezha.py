"""NEZHA: BERT with functional (fixed sinusoid) relative position encoding instead of absolute positions."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainer_hooks.config import ModelConfig
from trainer_hooks.models.common import (AttentionBlock, Encoder, FeedForwardBlock, PretrainingModel, SeedSequence,
                                         attention_bias, dummy_features)


def relative_position_table(max_relative_position: int, depth: int) -> np.ndarray:
    """Sinusoid table [2K+1, depth] indexed by the clipped, shifted distance ``clip(j - i, -K, K) + K``.

    As in the released NEZHA code, the sinusoid argument is the shifted index ``pos`` in [0, 2K], not the signed
    distance: ``T[pos, 2k] = sin(pos / 10000^(2k/depth))``, ``T[pos, 2k+1] = cos(...)``. Keeping that convention
    keeps converted NEZHA checkpoints usable. An odd ``depth`` leaves the last column zero.
    """
    pos = np.arange(2 * max_relative_position + 1, dtype=np.float64)[:, None]
    k = np.arange(depth // 2, dtype=np.float64)[None, :]
    angle = pos / np.power(10000.0, 2.0 * k / depth)
    table = np.zeros([2 * max_relative_position + 1, depth], np.float64)
    table[:, 0:2 * (depth // 2):2] = np.sin(angle)
    table[:, 1:2 * (depth // 2):2] = np.cos(angle)
    return table.astype(np.float32)


def relative_position_index(length: tf.Tensor | int, max_relative_position: int) -> tf.Tensor:
    """[L, L] int32 matrix ``clip(j - i, -K, K) + K`` (row i attends to column j)."""
    r = tf.range(length)
    return tf.clip_by_value(r[None, :] - r[:, None], -max_relative_position, max_relative_position) \
        + max_relative_position


class NezhaEncoder(Encoder):
    """BERT encoder with token + segment embeddings (no absolute positions) and relative attention in every
    layer; the fixed table is shared by all layers and heads and is not a trainable parameter."""

    def __init__(self, config: ModelConfig, seeds: SeedSequence, **kwargs: Any) -> None:
        super().__init__(config, seeds, **kwargs)
        init = config.initializer_range
        h = config.hidden_size
        self.word_embedding_layer = keras.layers.Embedding(
            config.vocab_size, h, embeddings_initializer=seeds.initializer(init), name="word_embeddings",
            dtype=self.dtype_policy)
        self.token_type_embedding_layer = keras.layers.Embedding(
            config.type_vocab_size, h, embeddings_initializer=seeds.initializer(init), name="token_type_embeddings",
            dtype=self.dtype_policy)
        self.embedding_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="embedding_norm",
                                                              dtype=self.dtype_policy)
        self.embedding_dropout = keras.layers.Dropout(config.hidden_dropout_prob, seed=seeds.next(),
                                                      dtype=self.dtype_policy)
        self.attention_blocks = [AttentionBlock(config, seeds, name=f"attention_{i}", dtype=self.dtype_policy)
                                 for i in range(config.num_hidden_layers)]
        self.ffn_blocks = [FeedForwardBlock(config, seeds, name=f"ffn_{i}", dtype=self.dtype_policy)
                           for i in range(config.num_hidden_layers)]
        self.relative_table = relative_position_table(config.max_relative_position, config.head_size)

    @property
    def word_embeddings(self) -> keras.Variable:
        return self.word_embedding_layer.embeddings

    def relative_embeddings(self, length: tf.Tensor | int) -> tf.Tensor:
        """[L, L, head_size] relative position embeddings for a sequence of ``length``."""
        index = relative_position_index(length, self.config.max_relative_position)
        return tf.gather(tf.constant(self.relative_table), index)

    def call(self, input_ids: tf.Tensor, segment_ids: tf.Tensor, input_mask: tf.Tensor,
             training: bool = False, output_internals: bool = False) -> tuple:
        x = self.word_embedding_layer(input_ids) + self.token_type_embedding_layer(segment_ids)
        x = self.embedding_dropout(self.embedding_norm(x), training=training)
        bias = attention_bias(input_mask, x.dtype)
        # Always relative: NEZHA has no other position signal (``use_relative_position`` is kept in the JSON only).
        relative = self.relative_embeddings(tf.shape(input_ids)[1])
        hidden, scores = [x], []
        for attention, ffn in zip(self.attention_blocks, self.ffn_blocks):
            x = attention(x, bias, relative=relative, training=training, return_scores=output_internals)
            if output_internals:
                x, s = x
                scores.append(s)
            x = ffn(x, training=training)
            hidden.append(x)
        return self.finish(x, hidden, scores, output_internals)


def build_nezha(config: ModelConfig, dtype: str = "float32", seed: int = 0,
                max_predictions_per_seq: int = 20) -> PretrainingModel:
    """Create a NEZHA pretraining model and its variables (deterministic given ``seed``)."""
    seeds = SeedSequence(seed)
    encoder = NezhaEncoder(config, seeds, name="nezha", dtype=dtype)
    model = PretrainingModel(encoder, config, seeds, name="nezha_pretraining", dtype=dtype)
    model(dummy_features(8, max_predictions_per_seq))
    return model
