"""ALBERT: factorised embedding (V x E then E x H) and cross-layer parameter sharing."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from trainer_hooks.config import ModelConfig
from trainer_hooks.models.common import (AttentionBlock, attention_bias, Encoder, FeedForwardBlock, PretrainingModel, SeedSequence,
                                         dummy_features)


EMBEDDING_LAYOUTS = ("google", "albert_zh")


def embedding_layout(config: ModelConfig) -> str:
    """``google`` (default): word + token type + position embeddings summed and normalised at width E, then
    projected to H. ``albert_zh`` (brightmart's release, set by ``import_checkpoint``): the word embeddings are
    projected to H first (no bias), then H-wide token type and position embeddings are added and normalised; the
    MLM head works at width H and projects back through the transposed projection."""
    layout = config.extra.get("embedding_layout", "google")
    if layout not in EMBEDDING_LAYOUTS:
        raise ValueError(f"embedding_layout must be one of {EMBEDDING_LAYOUTS}, got {layout!r}")
    return layout


class AlbertEncoder(Encoder):
    """ALBERT encoder.

    ``share_type``: ``"all"`` one attention + one FFN block reused by every layer (albert_zh default);
    ``"attention"`` one attention block shared, a separate FFN per layer; ``"none"`` plain BERT stacking.
    ``embedding_layout`` (config extra): see ``embedding_layout()``.
    """

    def __init__(self, config: ModelConfig, seeds: SeedSequence, **kwargs: Any) -> None:
        super().__init__(config, seeds, **kwargs)
        init = config.initializer_range
        e = config.embedding_width
        self.layout = embedding_layout(config)
        zh = self.layout == "albert_zh"
        self.word_embedding_layer = keras.layers.Embedding(
            config.vocab_size, e, embeddings_initializer=seeds.initializer(init), name="word_embeddings",
            dtype=self.dtype_policy)
        self.token_type_embedding_layer = keras.layers.Embedding(
            config.type_vocab_size, config.hidden_size if zh else e, embeddings_initializer=seeds.initializer(init),
            name="token_type_embeddings", dtype=self.dtype_policy)
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(config.max_position_embeddings, config.hidden_size if zh else e),
            initializer=seeds.initializer(init))
        self.embedding_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="embedding_norm",
                                                              dtype=self.dtype_policy)
        self.embedding_dropout = keras.layers.Dropout(config.hidden_dropout_prob, seed=seeds.next(),
                                                      dtype=self.dtype_policy)
        self.embedding_projection = keras.layers.Dense(config.hidden_size, kernel_initializer=seeds.initializer(init),
                                                       use_bias=not zh, name="embedding_hidden_mapping_in",
                                                       dtype=self.dtype_policy)
        n = config.num_hidden_layers
        n_attention = 1 if config.albert_share_type in ("all", "attention") else n
        n_ffn = 1 if config.albert_share_type == "all" else n
        self.attention_blocks = [AttentionBlock(config, seeds, name=f"attention_{i}", dtype=self.dtype_policy)
                                 for i in range(n_attention)]
        self.ffn_blocks = [FeedForwardBlock(config, seeds, name=f"ffn_{i}", dtype=self.dtype_policy)
                           for i in range(n_ffn)]

    @property
    def word_embeddings(self) -> keras.Variable:
        return self.word_embedding_layer.embeddings

    def call(self, input_ids: tf.Tensor, segment_ids: tf.Tensor, input_mask: tf.Tensor,
             training: bool = False, output_internals: bool = False) -> tuple:
        length = tf.shape(input_ids)[1]
        words = self.word_embedding_layer(input_ids)
        if self.layout == "albert_zh":
            words = self.embedding_projection(words)
        x = words + self.token_type_embedding_layer(segment_ids)
        x += tf.cast(self.position_embeddings[:length], x.dtype)[tf.newaxis]
        x = self.embedding_dropout(self.embedding_norm(x), training=training)
        if self.layout == "google":
            x = self.embedding_projection(x)
        bias = attention_bias(input_mask, x.dtype)
        hidden, scores = [x], []
        for i in range(self.config.num_hidden_layers):
            # Python loop: the shared block is called L times, so its variables receive L gradient contributions.
            x = self.attention_blocks[i % len(self.attention_blocks)](x, bias, training=training,
                                                                      return_scores=output_internals)
            if output_internals:
                x, s = x
                scores.append(s)
            x = self.ffn_blocks[i % len(self.ffn_blocks)](x, training=training)
            hidden.append(x)
        return self.finish(x, hidden, scores, output_internals)


def build_albert(config: ModelConfig, dtype: str = "float32", seed: int = 0,
                 max_predictions_per_seq: int = 20) -> PretrainingModel:
    """Create an ALBERT pretraining model and its variables (deterministic given ``seed``)."""
    seeds = SeedSequence(seed)
    encoder = AlbertEncoder(config, seeds, name="albert", dtype=dtype)
    model = PretrainingModel(encoder, config, seeds, name="albert_pretraining", dtype=dtype)
    model(dummy_features(min(8, config.max_position_embeddings), max_predictions_per_seq))
    return model


def albert_parameter_count(config: ModelConfig) -> int:
    """Closed-form trainable parameter count of ``build_albert(config)`` (used by the tests)."""
    v, e, h, i, n = (config.vocab_size, config.embedding_width, config.hidden_size, config.intermediate_size,
                     config.num_hidden_layers)
    if embedding_layout(config) == "albert_zh":
        embeddings = v * e + (config.type_vocab_size + config.max_position_embeddings) * h + 2 * h
        projection = e * h
        mlm = h * h + h + 2 * h + v
    else:
        embeddings = (v + config.type_vocab_size + config.max_position_embeddings) * e + 2 * e
        projection = e * h + h
        mlm = h * e + e + 2 * e + v
    attention = 4 * (h * h + h) + 2 * h
    ffn = h * i + i + i * h + h + 2 * h
    n_attention = 1 if config.albert_share_type in ("all", "attention") else n
    n_ffn = 1 if config.albert_share_type == "all" else n
    pooler = h * h + h
    sentence = 2 * h + 2
    return embeddings + projection + n_attention * attention + n_ffn * ffn + pooler + mlm + sentence
