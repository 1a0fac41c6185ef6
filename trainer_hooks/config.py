"""Model configuration in the albert_zh / NEZHA-TensorFlow JSON style (read and written)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

SHARE_TYPES = ("all", "attention", "none")


@dataclasses.dataclass
class ModelConfig:
    """Hyper-parameters shared by ALBERT and NEZHA.

    Field names follow the released ``albert_config_*.json`` / NEZHA ``bert_config.json`` files so those files
    load unchanged. Keys this trainer does not use (``pooler_*``, ``directionality``, ``ln_type``...) are kept
    in ``extra`` and written back, so a round trip never loses information.
    """

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    # ALBERT only: factorised embedding width E (None means E = H, i.e. plain BERT embeddings).
    embedding_size: Optional[int] = None
    # ALBERT only: which encoder parameters are shared across layers (None means "all", albert_zh's choice).
    share_type: Optional[str] = None
    # NEZHA only: Shaw-style functional relative positions, clipped at +-max_relative_position.
    use_relative_position: bool = False
    max_relative_position: int = 64
    # Optional pin of the vocabulary file, checked against the manifest's vocab_sha256.
    vocab_sha256: Optional[str] = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.share_type is not None and self.share_type not in SHARE_TYPES:
            raise ValueError(f"share_type must be one of {SHARE_TYPES}, got {self.share_type!r}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def albert_share_type(self) -> str:
        return self.share_type or "all"

    @property
    def embedding_width(self) -> int:
        return self.embedding_size or self.hidden_size

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = dict(data.get("extra", {}))
        extra.update({k: v for k, v in data.items() if k not in known and k != "extra"})
        return cls(**kwargs, extra=extra)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "ModelConfig":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra" and v is not None}
        out.update(self.extra)
        return dict(sorted(out.items()))

    def to_json_file(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, ensure_ascii=False)
            f.write("\n")


CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def shipped_config(name: str) -> str:
    """Path of a config shipped in ``trainer_hooks/configs`` (e.g. ``"albert_config_tiny"``)."""
    path = os.path.join(CONFIG_DIR, name if name.endswith(".json") else name + ".json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no shipped config {name!r}; have {sorted(os.listdir(CONFIG_DIR))}")
    return path
