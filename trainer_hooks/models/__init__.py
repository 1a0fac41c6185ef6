"""ALBERT and NEZHA pretraining models (Keras 3 on TensorFlow)."""

from __future__ import annotations

from trainer_hooks.config import ModelConfig
from trainer_hooks.models.common import PretrainingModel

MODEL_KINDS = ("albert", "nezha")


def build_model(kind: str, config: ModelConfig, dtype: str = "float32", seed: int = 0,
                max_predictions_per_seq: int = 20) -> PretrainingModel:
    """Build an ``albert`` or ``nezha`` pretraining model with its variables created."""
    if kind == "albert":
        from trainer_hooks.models.albert import build_albert
        return build_albert(config, dtype=dtype, seed=seed, max_predictions_per_seq=max_predictions_per_seq)
    if kind == "nezha":
        from trainer_hooks.models.nezha import build_nezha
        return build_nezha(config, dtype=dtype, seed=seed, max_predictions_per_seq=max_predictions_per_seq)
    raise ValueError(f"model must be one of {MODEL_KINDS}, got {kind!r}")
