"""Import a released TF1 checkpoint (Google BERT, google-research ALBERT, NEZHA) into this trainer's models.

    python -m trainer_hooks.import_checkpoint --checkpoint PREFIX --config JSON --model albert|nezha \
        --flavour google_bert|google_albert|albert_zh|nezha --output RUN_DIR [--vocab_file VOCAB]

RUN_DIR then looks like a pretraining run at step 0: ``ckpt-0`` (model weights only), ``model_config.json``,
``run_args.json`` and ``import_report.json``, the list of every checkpoint variable used (with the variable it
became), every model variable the checkpoint lacked (kept at its initial value, or refused for the encoder) and
every checkpoint variable left over (optimizer slots, ``global_step``...). ``pretrain --init_checkpoint RUN_DIR``
continues pretraining from it and ``finetune --init RUN_DIR`` fine-tunes it.

Variable names are those of each release's ``modeling.py`` / ``run_pretraining.py``:

* ``google_bert`` (google-research/bert, e.g. BERT-Base Chinese) -> ``--model albert`` with ``share_type none``
  and ``embedding_size`` = ``hidden_size``: ``bert/embeddings/{word,token_type,position}_embeddings``,
  ``bert/embeddings/LayerNorm``, ``bert/encoder/layer_N/attention/self/{query,key,value}``,
  ``.../attention/output/{dense,LayerNorm}``, ``.../intermediate/dense``, ``.../output/{dense,LayerNorm}``,
  ``bert/pooler/dense``, ``cls/predictions/{transform/dense,transform/LayerNorm,output_bias}``,
  ``cls/seq_relationship/{output_weights,output_bias}``. BERT has no factorised embedding, so the E->H projection
  of this trainer's ALBERT is set to the identity (reported as synthesised).
* ``google_albert`` (google-research/albert) -> ``--model albert``, ``share_type all``: the embeddings as above (E
  wide), ``bert/encoder/embedding_hidden_mapping_in``, and one shared block
  ``bert/encoder/transformer/group_0/inner_group_0/{attention_1/self/*, attention_1/output/dense, LayerNorm,
  ffn_1/intermediate/dense, ffn_1/intermediate/output/dense, LayerNorm_1}``; only ``num_hidden_groups`` =
  ``inner_group_num`` = 1 (every released model) is accepted.
* ``nezha`` (huawei-noah NEZHA-TensorFlow) -> ``--model nezha``: BERT's names without
  ``position_embeddings`` (relative positions are a fixed function, not a variable).
* ``albert_zh`` (brightmart/albert_zh) -> ``--model albert`` with ``embedding_layout: albert_zh``: its word
  embeddings [V, E] are projected by ``bert/embeddings/word_embeddings_2`` ([E, H], no bias) *before* the H-wide
  token type / position embeddings and LayerNorm are applied, and its MLM head (``cls/predictions/transform``,
  H wide) projects back through the transposed projection; the trainer's ALBERT has that layout as an option.
  Layers are BERT's names under ``bert/encoder/layer_shared`` (share_type all) or ``layer_N`` (none).

Refusals (exit status 2, nothing written) name the variable: a checkpoint shape that disagrees with the config, an
encoder variable missing from the checkpoint, a vocab file whose size is not the embedding's row count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Optional, Sequence

from trainer_hooks import cli

FLAVOURS = ("google_bert", "google_albert", "albert_zh", "nezha")
FLAVOUR_MODEL = {"google_bert": "albert", "google_albert": "albert", "albert_zh": "albert", "nezha": "nezha"}


class ImportRefused(ValueError):
    """A checkpoint that cannot be imported as asked (the message names the variable or option)."""


def model_config(raw: dict, flavour: str, names: Sequence[str] = ()) -> Any:
    """This trainer's ``ModelConfig`` for a release's config JSON (``names``: the checkpoint's variables)."""
    from trainer_hooks.config import ModelConfig
    raw = dict(raw)
    if flavour == "google_bert":
        raw["embedding_size"] = raw["hidden_size"]
        raw["share_type"] = "none"
    elif flavour == "google_albert":
        groups, inner = raw.get("num_hidden_groups", 1), raw.get("inner_group_num", 1)
        if groups != 1 or inner != 1:
            raise ImportRefused(f"google_albert with num_hidden_groups={groups}, inner_group_num={inner}: only one "
                                "shared group with one inner block (every released ALBERT) maps to share_type all")
        raw["share_type"] = "all"
    elif flavour == "albert_zh":
        raw["embedding_layout"] = "albert_zh"
        shared = any(n.startswith("bert/encoder/layer_shared/") for n in names)
        raw["share_type"] = "all" if shared else "none"
    elif flavour == "nezha":
        raw.pop("embedding_size", None)
        raw["use_relative_position"] = True
    return ModelConfig.from_dict(raw)


def _dense(prefix: str, layer: Any) -> list[tuple[str, Any, Optional[Callable]]]:
    return [(f"{prefix}/kernel", layer.kernel, None), (f"{prefix}/bias", layer.bias, None)]


def _norm(prefix: str, layer: Any) -> list[tuple[str, Any, Optional[Callable]]]:
    return [(f"{prefix}/gamma", layer.gamma, None), (f"{prefix}/beta", layer.beta, None)]


def mapping(model: Any, flavour: str) -> tuple[list, list]:
    """(``[(checkpoint name, model variable, transform or None)]``, ``[(model variable, synthesised value,
    why)]``) for ``flavour``. Encoder entries come first; ``cls/*`` are the pretraining heads."""
    import numpy as np

    enc = model.encoder
    out: list = [("bert/embeddings/word_embeddings", enc.word_embedding_layer.embeddings, None),
                 ("bert/embeddings/token_type_embeddings", enc.token_type_embedding_layer.embeddings, None)]
    if flavour != "nezha":
        out.append(("bert/embeddings/position_embeddings", enc.position_embeddings, None))
    out += _norm("bert/embeddings/LayerNorm", enc.embedding_norm)
    synth: list = []
    cfg = model.config
    if flavour == "google_bert" or (flavour == "google_albert" and cfg.embedding_width == cfg.hidden_size):
        # No factorised embedding in the release (or E == H, where ALBERT's code skips the projection).
        eye = np.eye(cfg.hidden_size, dtype=np.float32)
        synth += [(enc.embedding_projection.kernel, eye, "identity: the release has no E->H projection"),
                  (enc.embedding_projection.bias, np.zeros(cfg.hidden_size, np.float32), "zero")]
    elif flavour == "google_albert":
        out += _dense("bert/encoder/embedding_hidden_mapping_in", enc.embedding_projection)
    elif flavour == "albert_zh":
        out.append(("bert/embeddings/word_embeddings_2", enc.embedding_projection.kernel, None))
    if flavour == "google_albert":
        p = "bert/encoder/transformer/group_0/inner_group_0"
        att, ffn = enc.attention_blocks[0], enc.ffn_blocks[0]
        out += (_dense(f"{p}/attention_1/self/query", att.query) + _dense(f"{p}/attention_1/self/key", att.key)
                + _dense(f"{p}/attention_1/self/value", att.value)
                + _dense(f"{p}/attention_1/output/dense", att.output_dense) + _norm(f"{p}/LayerNorm", att.layer_norm)
                + _dense(f"{p}/ffn_1/intermediate/dense", ffn.intermediate)
                + _dense(f"{p}/ffn_1/intermediate/output/dense", ffn.output_dense)
                + _norm(f"{p}/LayerNorm_1", ffn.layer_norm))
    else:
        for i, (att, ffn) in enumerate(zip(enc.attention_blocks, enc.ffn_blocks)):
            shared = flavour == "albert_zh" and cfg.albert_share_type == "all"
            p = "bert/encoder/layer_shared" if shared else f"bert/encoder/layer_{i}"
            out += (_dense(f"{p}/attention/self/query", att.query) + _dense(f"{p}/attention/self/key", att.key)
                    + _dense(f"{p}/attention/self/value", att.value)
                    + _dense(f"{p}/attention/output/dense", att.output_dense)
                    + _norm(f"{p}/attention/output/LayerNorm", att.layer_norm)
                    + _dense(f"{p}/intermediate/dense", ffn.intermediate)
                    + _dense(f"{p}/output/dense", ffn.output_dense) + _norm(f"{p}/output/LayerNorm", ffn.layer_norm))
    out += _dense("bert/pooler/dense", enc.pooler)
    out += (_dense("cls/predictions/transform/dense", model.mlm_transform)
            + _norm("cls/predictions/transform/LayerNorm", model.mlm_layer_norm)
            + [("cls/predictions/output_bias", model.mlm_bias, None),
               # The release stores the sentence head as [2, H] for matmul(x, W, transpose_b=True).
               ("cls/seq_relationship/output_weights", model.sentence_head.kernel, np.transpose),
               ("cls/seq_relationship/output_bias", model.sentence_head.bias, None)])
    return out, synth


def import_checkpoint(prefix: str, raw_config: dict, kind: str, flavour: str,
                      vocab_file: Optional[str] = None) -> tuple[Any, dict]:
    """Build ``kind`` for the release config and assign the checkpoint's weights; returns (model, report)."""
    import numpy as np
    import tensorflow as tf

    from trainer_hooks.models import build_model
    if FLAVOUR_MODEL[flavour] != kind:
        raise ImportRefused(f"--flavour {flavour} imports into --model {FLAVOUR_MODEL[flavour]}, not {kind}"
                            + (" (it has absolute positions, NEZHA none)" if kind == "nezha" else ""))
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.NotFoundError, ValueError) as e:
        raise ImportRefused(f"cannot read checkpoint {prefix}: {e}") from None
    shapes = reader.get_variable_to_shape_map()
    config = model_config(raw_config, flavour, list(shapes))
    model = build_model(kind, config, dtype="float32")
    pairs, synth = mapping(model, flavour)
    used, missing = [], []
    values = []
    for name, var, transform in pairs:
        want = tuple(var.shape)
        if name not in shapes:
            if not name.startswith("cls/"):
                raise ImportRefused(f"checkpoint {prefix} has no {name} (needed for {var.path}; --flavour {flavour}"
                                    f" expects it)")
            missing.append({"name": name, "target": var.path, "kept": "initial value"})
            continue
        got = tuple(shapes[name])
        tgt_shape = got[::-1] if transform is np.transpose else got
        if tgt_shape != want:
            raise ImportRefused(f"{name}: checkpoint shape {list(got)} does not match the config's "
                                f"{list(want[::-1] if transform is np.transpose else want)} (for {var.path})")
        value = reader.get_tensor(name)
        values.append((var, transform(value) if transform else value))
        used.append({"name": name, "shape": list(got), "target": var.path})
    if vocab_file:
        from corpusflow.tokenize.wordpiece import load_vocab
        n = len(load_vocab(vocab_file))
        rows = shapes["bert/embeddings/word_embeddings"][0]
        if n != rows:
            raise ImportRefused(f"vocab {vocab_file} has {n} tokens but bert/embeddings/word_embeddings has {rows} "
                                "rows")
    for var, value in values:
        var.assign(value.astype(np.float32))
    for var, value, why in synth:
        var.assign(value)
    taken = {u["name"] for u in used}
    left = [{"name": n, "shape": list(s)} for n, s in sorted(shapes.items()) if n not in taken]
    report = {"checkpoint": prefix, "flavour": flavour, "model": kind, "used": used, "missing": missing,
              "synthesised": [{"target": v.path, "value": why} for v, _, why in synth], "left_over": left}
    return model, report


def write_run_dir(model: Any, kind: str, report: dict, output: str, vocab_file: Optional[str]) -> str:
    """A run directory at step 0 (model weights only) that pretrain/finetune/export/convert_hf read."""
    import tensorflow as tf
    os.makedirs(output, exist_ok=True)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), output, max_to_keep=1)
    path = manager.save(checkpoint_number=0)
    model.config.to_json_file(os.path.join(output, "model_config.json"))
    with open(os.path.join(output, "run_args.json"), "w", encoding="utf-8") as f:
        json.dump({"model": kind, "vocab_file": os.path.abspath(vocab_file) if vocab_file else None,
                   "imported_from": report["checkpoint"], "flavour": report["flavour"],
                   "max_predictions_per_seq": 20}, f, indent=2)
    with open(os.path.join(output, "import_report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m trainer_hooks.import_checkpoint", __doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="TF1 checkpoint prefix (e.g. DIR/bert_model.ckpt)")
    p.add_argument("--config", required=True, help="the release's config JSON (bert_config/albert_config)")
    p.add_argument("--model", required=True, choices=("albert", "nezha"), help="this trainer's architecture")
    p.add_argument("--flavour", required=True, choices=FLAVOURS, help="whose variable layout the checkpoint has")
    p.add_argument("--output", required=True, help="run directory to write")
    p.add_argument("--vocab_file", default=None,
                   help="default: none; if given, checked against the embedding rows and recorded for finetune")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    cli.import_tensorflow_quietly()
    try:
        with open(args.config, encoding="utf-8") as f:
            raw = json.load(f)
        model, report = import_checkpoint(args.checkpoint, raw, args.model, args.flavour, args.vocab_file)
    except (ImportRefused, OSError, ValueError) as e:
        print(f"[import] refused: {e}", file=sys.stderr, flush=True)
        return 2
    path = write_run_dir(model, args.model, report, args.output, args.vocab_file)
    print(f"[import] {args.checkpoint} -> {path}: used {len(report['used'])}, synthesised "
          f"{len(report['synthesised'])}, missing {len(report['missing'])}, left over {len(report['left_over'])} "
          f"(see {os.path.join(args.output, 'import_report.json')})", file=sys.stderr, flush=True)
    for m in report["missing"]:
        print(f"[import] missing {m['name']}: {m['target']} keeps its initial value", file=sys.stderr)
    for m in report["left_over"]:
        print(f"[import] left over {m['name']} {m['shape']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
