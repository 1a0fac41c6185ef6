"""Convert a trainer checkpoint into a Hugging Face ``transformers`` directory (PyTorch weights).

    python -m trainer_hooks.convert_hf --model_dir RUN --output HF_DIR [--checkpoint RUN/ckpt-N] [--vocab_file V]

ALBERT becomes ``AlbertForPreTraining`` (embeddings, factorised projection, layer groups, pooler, tied MLM head,
SOP head). Load it offline with ``AlbertForPreTraining.from_pretrained(HF_DIR)``; ``AlbertModel`` or ``AutoModel``
load the encoder alone. NEZHA becomes ``NezhaForPreTraining``, transformers' port of the released NEZHA code,
which computes the same fixed relative-position table as this trainer. That port is deprecated: 4.x still ships
it, and when the installed transformers lacks it, NEZHA is refused. ``BertModel`` is not a fallback, because BERT
has absolute positions and no relative term, so no weight mapping reproduces NEZHA's outputs.

Writes to HF_DIR: ``config.json``, ``model.safetensors`` (``pytorch_model.bin`` with ``--no_safetensors``), and,
when a vocabulary is known, ``vocab.txt`` + ``tokenizer_config.json`` + ``special_tokens_map.json`` for
``BertTokenizer``. The directory is then reloaded offline and compared with the TensorFlow model on a random
padded batch; a max abs difference above ``--atol`` is an error (``--no_verify`` skips this).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Optional, Sequence

import numpy as np

# Our config's activation names -> transformers' ACT2FN names. Our "gelu" is the tanh approximation of the
# original BERT/ALBERT code, which transformers calls "gelu_new"; transformers' "gelu" is the exact erf form.
HF_ACTIVATIONS = {"gelu": "gelu_new", "gelu_new": "gelu_new", "gelu_exact": "gelu", "relu": "relu", "tanh": "tanh"}


class ConversionRefused(ValueError):
    """The checkpoint cannot be expressed exactly by the transformers model class."""


def hf_activation(name: str) -> str:
    """transformers' name for the activation our config calls ``name``."""
    if name not in HF_ACTIVATIONS:
        raise ConversionRefused(f"hidden_act {name!r} has no transformers equivalent (know {sorted(HF_ACTIVATIONS)})")
    return HF_ACTIVATIONS[name]


def _array(variable: Any) -> np.ndarray:
    return np.asarray(variable.numpy(), dtype=np.float32)


def _linear(prefix: str, layer: Any) -> dict[str, np.ndarray]:
    # Keras Dense kernels are [in, out]; torch.nn.Linear weights are [out, in].
    return {f"{prefix}.weight": _array(layer.kernel).T.copy(), f"{prefix}.bias": _array(layer.bias)}


def _norm(prefix: str, layer: Any) -> dict[str, np.ndarray]:
    return {f"{prefix}.weight": _array(layer.gamma), f"{prefix}.bias": _array(layer.beta)}


def _heads(model: Any, mlm_prefix: str, transform_prefix: str, sentence_key: str) -> dict[str, np.ndarray]:
    """MLM transform + LayerNorm, tied decoder (weight = word embeddings, bias = output bias), sentence head."""
    bias = _array(model.mlm_bias)
    return {**_linear(f"{transform_prefix}.dense", model.mlm_transform),
            **_norm(f"{transform_prefix}.LayerNorm", model.mlm_layer_norm),
            f"{mlm_prefix}.bias": bias, f"{mlm_prefix}.decoder.bias": bias,
            # The decoder is tied to the input embeddings in both frameworks; the copy only fills the state dict
            # (``save_pretrained`` stores the tied tensor once and ``from_pretrained`` ties it again).
            f"{mlm_prefix}.decoder.weight": _array(model.encoder.word_embeddings),
            **_linear(sentence_key, model.sentence_head)}


def albert_state_dict(model: Any, untie_shared_attention: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(AlbertConfig kwargs, AlbertForPreTraining state dict)`` for a trainer ALBERT ``model``.

    transformers' ALBERT layer is attention + FFN together, and weights can only be shared a whole layer at a
    time (``num_hidden_groups``). ``share_type`` "all" is one group and "none" is one group per layer, and both
    are exact. "attention" (shared attention, separate FFNs) has no equivalent. With ``untie_shared_attention``
    it becomes one group per layer, each holding a copy of the shared attention. The outputs are still exact,
    but fine-tuning then updates the copies independently.
    """
    cfg = model.config
    enc = model.encoder
    n = cfg.num_hidden_layers
    share = cfg.albert_share_type
    if share == "attention" and not untie_shared_attention:
        raise ConversionRefused(
            "share_type 'attention' (one attention block shared, separate FFNs) cannot be expressed by "
            "transformers' AlbertModel, which shares whole layers only; pass --untie_shared_attention to copy the "
            "shared attention into every layer (same outputs, but the copies are no longer tied)")
    if getattr(enc, "layout", "google") == "albert_zh":
        raise ConversionRefused(
            "embedding_layout albert_zh (word embeddings projected to H before the position/type embeddings and "
            "LayerNorm, as imported from brightmart/albert_zh) has no counterpart in transformers' AlbertModel, "
            "which normalises at width E and then projects")
    groups = 1 if share == "all" else n
    state = {"albert.embeddings.word_embeddings.weight": _array(enc.word_embeddings),
             "albert.embeddings.position_embeddings.weight": _array(enc.position_embeddings),
             "albert.embeddings.token_type_embeddings.weight": _array(enc.token_type_embedding_layer.embeddings),
             **_norm("albert.embeddings.LayerNorm", enc.embedding_norm),
             **_linear("albert.encoder.embedding_hidden_mapping_in", enc.embedding_projection),
             **_linear("albert.pooler", enc.pooler),
             **_heads(model, "predictions", "predictions", "sop_classifier.classifier")}
    for g in range(groups):
        # Our layer i uses attention_blocks[i % n_attention] and ffn_blocks[i % n_ffn]; HF layer i uses group
        # int(i / (n / groups)), i.e. 0 for "all" and i for one group per layer.
        attention = enc.attention_blocks[g % len(enc.attention_blocks)]
        ffn = enc.ffn_blocks[g % len(enc.ffn_blocks)]
        p = f"albert.encoder.albert_layer_groups.{g}.albert_layers.0"
        state.update({**_linear(f"{p}.attention.query", attention.query),
                      **_linear(f"{p}.attention.key", attention.key),
                      **_linear(f"{p}.attention.value", attention.value),
                      **_linear(f"{p}.attention.dense", attention.output_dense),
                      **_norm(f"{p}.attention.LayerNorm", attention.layer_norm),
                      **_linear(f"{p}.ffn", ffn.intermediate),
                      **_linear(f"{p}.ffn_output", ffn.output_dense),
                      **_norm(f"{p}.full_layer_layer_norm", ffn.layer_norm)})
    config = {"embedding_size": cfg.embedding_width, "num_hidden_groups": groups, "inner_group_num": 1,
              "position_embedding_type": "absolute"}
    return config, state


def nezha_state_dict(model: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(NezhaConfig kwargs, NezhaForPreTraining state dict)`` for a trainer NEZHA ``model``."""
    cfg = model.config
    enc = model.encoder
    if cfg.embedding_width != cfg.hidden_size:
        raise ConversionRefused(f"NEZHA with embedding_size {cfg.embedding_width} != hidden_size {cfg.hidden_size} "
                                "has no transformers equivalent")
    if cfg.head_size % 2:
        # transformers fills sin/cos columns of equal count and fails on an odd depth; we zero the last column.
        raise ConversionRefused(f"NEZHA head size {cfg.head_size} is odd; transformers' relative table needs it even")
    state = {"nezha.embeddings.word_embeddings.weight": _array(enc.word_embeddings),
             "nezha.embeddings.token_type_embeddings.weight": _array(enc.token_type_embedding_layer.embeddings),
             **_norm("nezha.embeddings.LayerNorm", enc.embedding_norm),
             **_linear("nezha.pooler.dense", enc.pooler),
             **_heads(model, "cls.predictions", "cls.predictions.transform", "cls.seq_relationship")}
    for i, (attention, ffn) in enumerate(zip(enc.attention_blocks, enc.ffn_blocks)):
        p = f"nezha.encoder.layer.{i}"
        state.update({**_linear(f"{p}.attention.self.query", attention.query),
                      **_linear(f"{p}.attention.self.key", attention.key),
                      **_linear(f"{p}.attention.self.value", attention.value),
                      **_linear(f"{p}.attention.output.dense", attention.output_dense),
                      **_norm(f"{p}.attention.output.LayerNorm", attention.layer_norm),
                      **_linear(f"{p}.intermediate.dense", ffn.intermediate),
                      **_linear(f"{p}.output.dense", ffn.output_dense),
                      **_norm(f"{p}.output.LayerNorm", ffn.layer_norm)})
    return {"max_relative_position": cfg.max_relative_position}, state


def hf_classes(kind: str) -> tuple[type, type]:
    """``(config class, pretraining model class)`` of transformers for ``kind``."""
    import transformers
    if kind == "albert":
        return transformers.AlbertConfig, transformers.AlbertForPreTraining
    if kind == "nezha":
        try:
            from transformers import NezhaConfig, NezhaForPreTraining
        except ImportError as e:
            raise ConversionRefused(
                f"transformers {transformers.__version__} no longer ships NEZHA (deprecated, removed in 5.x); "
                "install transformers<5 to convert NEZHA. BertModel is not a substitute: it has absolute positions "
                "and no relative-position term, so no weight mapping reproduces NEZHA") from e
        return NezhaConfig, NezhaForPreTraining
    raise ValueError(f"kind must be 'albert' or 'nezha', got {kind!r}")


def read_vocab(vocab_file: str) -> list[str]:
    """Tokens of a BERT-style vocab.txt, one per line, in id order (as BertTokenizer reads it)."""
    with open(vocab_file, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _special_ids(tokens: Optional[list[str]]) -> dict[str, int]:
    # Only pad_token_id changes the model (padding_idx of the embedding; gradients only). bos/eos are set so that
    # the config describes the vocab, with transformers' defaults where the token is absent.
    ids = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    if tokens:
        index = {t: i for i, t in enumerate(tokens)}
        for key, token in (("pad_token_id", "[PAD]"), ("bos_token_id", "[CLS]"), ("eos_token_id", "[SEP]")):
            if token in index:
                ids[key] = index[token]
    return ids


def to_hf_model(model: Any, kind: str, untie_shared_attention: bool = False,
                vocab_tokens: Optional[list[str]] = None) -> Any:
    """Build the transformers pretraining model holding ``model``'s weights (float32, eval mode)."""
    import torch

    cfg = model.config
    if vocab_tokens is not None and len(vocab_tokens) != cfg.vocab_size:
        raise ConversionRefused(f"vocab has {len(vocab_tokens)} tokens but the model's vocab_size is {cfg.vocab_size}")
    specific, state = (albert_state_dict(model, untie_shared_attention) if kind == "albert"
                       else nezha_state_dict(model))
    config_cls, model_cls = hf_classes(kind)
    hf_config = config_cls(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
        hidden_act=hf_activation(cfg.hidden_act), hidden_dropout_prob=cfg.hidden_dropout_prob,
        attention_probs_dropout_prob=cfg.attention_probs_dropout_prob,
        max_position_embeddings=cfg.max_position_embeddings, type_vocab_size=cfg.type_vocab_size,
        initializer_range=cfg.initializer_range, layer_norm_eps=cfg.layer_norm_eps, tie_word_embeddings=True,
        **_special_ids(vocab_tokens), **specific)
    hf_model = model_cls(hf_config)
    # strict=True: every parameter of the transformers model must come from the checkpoint, none left random.
    hf_model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    hf_model.tie_weights()
    hf_model.eval()
    if kind == "nezha":
        check_nezha_relative_table(hf_model, cfg)
    return hf_model


def check_nezha_relative_table(hf_model: Any, config: Any) -> float:
    """Compare transformers' NEZHA relative-position encodings with ours; raise if they differ.

    Both use the released NEZHA convention (sinusoid of the shifted index ``clip(j - i, -K, K) + K``). The check
    guards against a transformers release that changes it. Returns the max abs difference.
    """
    from trainer_hooks.models.nezha import relative_position_index, relative_position_table

    length = config.max_position_embeddings
    ours = relative_position_table(config.max_relative_position, config.head_size)[
        relative_position_index(length, config.max_relative_position).numpy()]
    diff = 0.0
    for layer in hf_model.nezha.encoder.layer:
        theirs = layer.attention.self.relative_positions_encoding(length).detach().cpu().numpy()
        diff = max(diff, float(np.max(np.abs(theirs - ours))))
    # transformers builds the table in float32 (ours in float64); 1e-4 tolerates that, not a different formula.
    if diff > 1e-4:
        raise ConversionRefused(f"transformers' NEZHA relative-position table differs from ours (max abs {diff:.3g})")
    return diff


def write_tokenizer(vocab_file: str, output: str, do_lower_case: bool, model_max_length: int) -> None:
    """Write vocab.txt + tokenizer_config.json + special_tokens_map.json for ``BertTokenizer`` (the pipeline's
    WordPiece is BERT's; ALBERT's own tokenizer is SentencePiece, which albert_zh-style vocabularies are not)."""
    from transformers import BertTokenizer
    tok = BertTokenizer(vocab_file, do_lower_case=do_lower_case, model_max_length=model_max_length)
    tok.save_pretrained(output)


def compare_outputs(model: Any, hf_model: Any, kind: str, batch: int = 2, length: int = 16,
                    seed: int = 0) -> dict[str, float]:
    """Max abs differences between ``model`` (TF) and ``hf_model`` (torch, eval) on a random batch whose second
    row is half padding: sequence output, pooled output, MLM logits at every position and sentence logits."""
    import tensorflow as tf
    import torch

    cfg = model.config
    length = min(length, cfg.max_position_embeddings)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, (batch, length))
    mask = np.ones_like(ids)
    mask[1:, length // 2:] = 0
    segments = np.zeros_like(ids)
    if cfg.type_vocab_size > 1:
        segments[:, length // 2:] = 1
    ours = model({"input_ids": tf.constant(ids), "input_mask": tf.constant(mask), "segment_ids": tf.constant(segments),
                  "masked_lm_positions": tf.constant(np.tile(np.arange(length), (batch, 1)))}, training=False)
    t = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
         "token_type_ids": torch.from_numpy(segments)}
    with torch.no_grad():
        base = hf_model.base_model(**t)
        heads = hf_model(**t)
    sentence = heads.sop_logits if kind == "albert" else heads.seq_relationship_logits
    pairs = {"sequence_output": (ours["sequence_output"], base.last_hidden_state),
             "pooled_output": (ours["pooled_output"], base.pooler_output),
             "mlm_logits": (ours["mlm_logits"], heads.prediction_logits),
             "sentence_logits": (ours["sentence_logits"], sentence)}
    return {k: float(np.max(np.abs(np.asarray(a, np.float32) - b.numpy()))) for k, (a, b) in pairs.items()}


def convert_model(model: Any, kind: str, output: str, vocab_file: Optional[str] = None, do_lower_case: bool = True,
                  untie_shared_attention: bool = False, safe_serialization: bool = True) -> Any:
    """Write ``model`` (a trainer ``PretrainingModel``) to ``output`` as a transformers directory; returns the
    in-memory transformers model."""
    tokens = read_vocab(vocab_file) if vocab_file else None
    hf_model = to_hf_model(model, kind, untie_shared_attention, tokens)
    os.makedirs(output, exist_ok=True)
    hf_model.save_pretrained(output, safe_serialization=safe_serialization)
    if vocab_file:
        write_tokenizer(vocab_file, output, do_lower_case, model.config.max_position_embeddings)
    return hf_model


def load_trained_model(kind: str, config_path: str, checkpoint: str, max_predictions_per_seq: int = 20) -> Any:
    """Rebuild the float32 model and restore its weights from a trainer checkpoint (``ckpt-N``) or from an
    export's ``pretraining.weights.h5``."""
    import tensorflow as tf

    from trainer_hooks.config import ModelConfig
    from trainer_hooks.models import build_model
    model = build_model(kind, ModelConfig.from_json_file(config_path), dtype="float32",
                        max_predictions_per_seq=max_predictions_per_seq)
    if checkpoint.endswith(".h5"):
        model.load_weights(checkpoint)
    else:
        # Only the model: optimizer slots, counters and RNG state in the checkpoint are not needed.
        tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial().assert_existing_objects_matched()
    return model


def _manifest_lower_case(run_args: dict[str, Any]) -> Optional[bool]:
    """``do_lower_case`` recorded by the pipeline in the run's manifest, if it can be read."""
    path = run_args.get("manifest")
    if not path or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        value = json.load(f).get("tfrecords", {}).get("do_lower_case")
    return None if value is None else bool(value)


def build_parser() -> argparse.ArgumentParser:
    """The convert_hf CLI; ``--help`` names every default."""
    from trainer_hooks import cli
    from trainer_hooks.export import VOCAB_HELP
    p = cli.parser("python -m trainer_hooks.convert_hf", __doc__.split("\n")[0])
    p.add_argument("--model_dir", required=True, help="trainer output dir (has model_config.json, run_args.json)")
    p.add_argument("--output", required=True, help="transformers directory to write")
    p.add_argument("--checkpoint", default=None,
                   help="ckpt-N prefix or an export's pretraining.weights.h5 (default: latest in --model_dir)")
    p.add_argument("--model", choices=("albert", "nezha"), default=None, help="default: from run_args.json")
    p.add_argument("--config", default=None, help="default: MODEL_DIR/model_config.json")
    p.add_argument("--vocab_file", default=None, help=VOCAB_HELP)
    p.add_argument("--do_lower_case", action=argparse.BooleanOptionalAction, default=None,
                   help="tokenizer lower-casing (default: the manifest's do_lower_case, else true)")
    p.add_argument("--untie_shared_attention", action="store_true",
                   help="ALBERT share_type 'attention': copy the shared attention into every layer")
    p.add_argument("--no_safetensors", action="store_true", help="write pytorch_model.bin instead")
    p.add_argument("--no_verify", action="store_true", help="skip the reload-and-compare check")
    p.add_argument("--atol", type=float, default=1e-3, help="verification tolerance (max abs difference)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    # transformers' TF/Flax model code is never needed here; skipping it shortens the import.
    os.environ.setdefault("USE_TF", "0")
    os.environ.setdefault("USE_FLAX", "0")
    from trainer_hooks import cli
    from trainer_hooks.export import resolve_run
    from trainer_hooks.run_files import run_vocab_file

    cli.import_tensorflow_quietly()
    run_args, kind, checkpoint = resolve_run(args, p)
    vocab_file = args.vocab_file or run_vocab_file(run_args)
    lower = args.do_lower_case
    if lower is None:
        lower = _manifest_lower_case(run_args)
        lower = True if lower is None else lower
    model = load_trained_model(kind, args.config or os.path.join(args.model_dir, "model_config.json"), checkpoint,
                               run_args.get("max_predictions_per_seq", 20))
    try:
        convert_model(model, kind, args.output, vocab_file, lower, args.untie_shared_attention,
                      not args.no_safetensors)
    except ConversionRefused as e:
        print(f"[convert_hf] refused: {e}", file=sys.stderr, flush=True)
        return 2
    if not vocab_file:
        print("[convert_hf] no vocab file known (pass --vocab_file): wrote no tokenizer files", file=sys.stderr)
    print(f"[convert_hf] {checkpoint} -> {args.output}")
    if not args.no_verify:
        _, model_cls = hf_classes(kind)
        reloaded = model_cls.from_pretrained(args.output, local_files_only=True).eval()
        diffs = compare_outputs(model, reloaded, kind)
        print(f"[convert_hf] reloaded offline; max abs diff vs TF: {json.dumps(diffs)}")
        if max(diffs.values()) > args.atol:
            print(f"[convert_hf] verification failed: difference above --atol {args.atol}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
