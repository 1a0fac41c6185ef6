"""What ``finetune --init`` names, loaded: a pretraining run directory or ``ckpt-N`` prefix (an import is one), an
export directory, or ``none``; the vocab check; weights of another shape refused, naming the variable.

``trainer_hooks.distill`` resolves and loads its teacher with the same functions.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from trainer_hooks.run_files import InitError, read_json, run_vocab_file

CONFIG_NAMES = {"albert": "albert_config.json", "nezha": "bert_config.json"}


def _manifest_options(run_args: dict) -> dict:
    """``do_lower_case`` and ``t2s`` that the pretraining data was made with, where its manifest says."""
    path = run_args.get("manifest")
    if not path or not os.path.exists(path):
        return {}
    m = read_json(path)
    out = {}
    if m.get("tfrecords", {}).get("do_lower_case") is not None:
        out["do_lower_case"] = bool(m["tfrecords"]["do_lower_case"])
    if isinstance(m.get("config"), dict) and m["config"].get("t2s") is not None:
        out["t2s"] = bool(m["config"]["t2s"])
    return out


def resolve_init(init: str, kind: str, config_path: Optional[str]) -> dict[str, Any]:
    """What ``--init`` names: ``{"config", "checkpoint" | "weights_h5" | None, "vocab_file", "options"}``."""
    from trainer_hooks.config import ModelConfig

    if init == "none":
        if not config_path:
            raise InitError("--init none needs --config")
        return {"config": ModelConfig.from_json_file(config_path), "source": "random", "vocab_file": None,
                "options": {}}
    if os.path.isdir(init) and os.path.exists(os.path.join(init, "pretraining.weights.h5")):
        names = [n for n in CONFIG_NAMES.values() if os.path.exists(os.path.join(init, n))]
        if not names and not config_path:
            raise InitError(f"{init}: export without {' or '.join(CONFIG_NAMES.values())}; pass --config")
        cfg = ModelConfig.from_json_file(config_path or os.path.join(init, CONFIG_NAMES[kind]
                                                                     if CONFIG_NAMES[kind] in names else names[0]))
        vocab = os.path.join(init, "vocab.txt")
        return {"config": cfg, "source": "export", "weights_h5": os.path.join(init, "pretraining.weights.h5"),
                "vocab_file": vocab if os.path.exists(vocab) else None, "options": {}}
    import tensorflow as tf
    if os.path.isdir(init):
        run_dir, checkpoint = init, tf.train.latest_checkpoint(init)
        if checkpoint is None:
            raise InitError(f"{init}: no checkpoint (ckpt-N) and no pretraining.weights.h5 in this directory")
    elif tf.io.gfile.exists(init + ".index"):
        run_dir, checkpoint = os.path.dirname(init) or ".", init
    else:
        raise InitError(f"--init {init}: not a run directory, a checkpoint prefix, an export or 'none'")
    run_args_path = os.path.join(run_dir, "run_args.json")
    run_args = read_json(run_args_path) if os.path.exists(run_args_path) else {}
    if run_args.get("model") and run_args["model"] != kind:
        raise InitError(f"--init {init} is a {run_args['model']} run, not --model {kind}")
    cfg_path = config_path or os.path.join(run_dir, "model_config.json")
    if not os.path.exists(cfg_path):
        raise InitError(f"{run_dir}: no model_config.json; pass --config")
    return {"config": ModelConfig.from_json_file(cfg_path), "source": "checkpoint", "checkpoint": checkpoint,
            "vocab_file": run_vocab_file(run_args), "options": _manifest_options(run_args)}


_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def _checkpoint_shapes(prefix: str) -> dict[str, tuple]:
    """Shape of every model variable in a ``tf.train.Checkpoint(model=...)`` file, by its path in the model."""
    import tensorflow as tf
    return {k[:-len(_VALUE)]: tuple(s) for k, s in tf.train.list_variables(prefix)
            if k.startswith("model/") and k.endswith(_VALUE)}


def _h5_shapes(path: str) -> dict[str, tuple]:
    """Shape of every dataset in a Keras ``.weights.h5`` file, by its path in the file."""
    import h5py
    out: dict[str, tuple] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, tuple(obj.shape)) if isinstance(obj, h5py.Dataset)
                     else None)
    return out


def shape_misfits(model: Any, init: dict) -> list[str]:
    """Each variable whose shape in ``init``'s checkpoint or weights file differs from ``model``'s, named.

    TensorFlow's own restore error names the variable only by its last component (``kernel:0``) and Keras'
    ``load_weights`` by the layer; here the model's variables are written to a temporary file in the same format
    and the two files' shapes are compared by path.
    """
    import tempfile

    import tensorflow as tf
    with tempfile.TemporaryDirectory() as tmp:
        if init["source"] == "checkpoint":
            ours = _checkpoint_shapes(tf.train.Checkpoint(model=model).write(os.path.join(tmp, "model")))
            theirs, what = _checkpoint_shapes(init["checkpoint"]), "the checkpoint"
        else:
            path = os.path.join(tmp, "model.weights.h5")
            model.save_weights(path)
            ours, theirs, what = _h5_shapes(path), _h5_shapes(init["weights_h5"]), "the weights file"
    return [f"{k} has shape {list(theirs[k])} in {what} but {list(v)} in the config"
            for k, v in sorted(ours.items()) if k in theirs and theirs[k] != v]


def load_encoder(kind: str, init: dict, dtype: str, seed: int) -> Any:
    """The pretraining model of ``init`` with its weights loaded (random for ``source == 'random'``); weights of
    another shape are refused, naming the variable (``InitError``)."""
    import tensorflow as tf

    from trainer_hooks.models import build_model
    model = build_model(kind, init["config"], dtype=dtype, seed=seed)
    if init["source"] == "random":
        return model
    source = init.get("checkpoint") or init["weights_h5"]
    misfits = shape_misfits(model, init)
    if misfits:
        more = f" (and {len(misfits) - 1} more)" if len(misfits) > 1 else ""
        raise InitError(f"--init {source} does not fit this {kind} config: {misfits[0]}{more}")
    try:
        if init["source"] == "export":
            model.load_weights(init["weights_h5"])
        else:
            tf.train.Checkpoint(model=model).restore(init["checkpoint"]).expect_partial() \
                .assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise InitError(f"--init {source} does not fit this {kind} config: {str(e).strip().splitlines()[0][:300]}") \
            from None
    return model


def check_vocab(vocab_file: str, config: Any) -> None:
    """Refuse a vocab whose size differs from the model's embedding rows."""
    from corpusflow.tokenize.wordpiece import load_vocab
    n = len(load_vocab(vocab_file))
    if n != config.vocab_size:
        raise InitError(f"vocab {vocab_file} has {n} tokens but the model's word_embeddings have "
                        f"{config.vocab_size} rows")
