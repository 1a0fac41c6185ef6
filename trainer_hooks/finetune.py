"""Fine-tune an ALBERT or NEZHA encoder for single-sentence or sentence-pair classification.

    python -m trainer_hooks.finetune --task classify|pair --train FILE --dev FILE [--test FILE] \
        [--format auto|clue_json|lcqmc_tsv|label_tsv] --model albert|nezha --init PATH --output DIR [...]
    python -m trainer_hooks.finetune predict --model_dir DIR --input FILE [--output FILE]

``predict`` reads DIR/export (the SavedModel) or an ``export --tflite`` directory of the classifier (model.tflite).

``--init`` is a pretraining run directory (its latest ``ckpt-N``; also what ``import_checkpoint`` writes), a
``RUN/ckpt-N`` prefix, an export directory (``pretraining.weights.h5``), or ``none`` (random init; needs
``--config``). Text is cleaned and tokenised exactly as the pipeline does for pretraining text.

Writes to DIR: ``labels.txt`` (label of each class id), ``metrics.json`` (dev metrics per epoch, the best epoch,
dev/test metrics of the best checkpoint, row counts), ``epochs.jsonl``, ``ckpt/`` (end-of-epoch checkpoints: a
rerun of the same command resumes), ``best/`` (the best checkpoint by dev ``--metric``), and ``export/``
(``saved_model/`` with endpoint ``serve(input_ids, input_mask, segment_ids)`` -> ``probabilities`` [B, C],
plus ``labels.txt``, ``vocab.txt``, the model config and ``finetune.json``, everything ``predict`` needs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from typing import Any, Optional, Sequence

from trainer_hooks import cli
from trainer_hooks import finetune_data as fd
from trainer_hooks.finetune_init import CONFIG_NAMES, check_vocab, load_encoder, resolve_init
from trainer_hooks.run_files import InitError, load_export, read_json

PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
METRICS = ("accuracy", "macro_f1")


def _say(message: str) -> None:
    print(f"[finetune] {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The fine-tuning CLI; ``--help`` names every default."""
    p = cli.parser("python -m trainer_hooks.finetune", __doc__.split("\n")[0],
                   epilog="python -m trainer_hooks.finetune predict --model_dir DIR --input FILE [--output FILE] "
                          "classifies raw sentences with a fine-tuned model (predict --help for more).")
    p.add_argument("--task", required=True, choices=fd.TASKS, help="single sentence or sentence pair")
    p.add_argument("--train", required=True, help="labelled training file")
    p.add_argument("--dev", required=True, help="labelled dev file (evaluated after every epoch)")
    p.add_argument("--test", default=None, help="labelled test file, evaluated once with the best checkpoint")
    p.add_argument("--format", choices=fd.FORMATS, default="auto",
                   help="auto: JSON lines -> clue_json, 3 TSV fields -> lcqmc_tsv, 2 -> label_tsv")
    p.add_argument("--model", required=True, choices=("albert", "nezha"), help="architecture")
    p.add_argument("--init", required=True,
                   help="RUN_DIR (latest ckpt), RUN/ckpt-N, an export dir, or 'none' (random, needs --config)")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--config", default=None,
                   help="model config JSON (default: the one --init comes with; required with --init none)")
    p.add_argument("--vocab_file", default=None,
                   help="default: --init's vocab (export's vocab.txt, run's --vocab_file or manifest vocab), else "
                        "the bundled standard vocab")
    p.add_argument("--do_lower_case", action=argparse.BooleanOptionalAction, default=None,
                   help="default: the pretraining manifest's, else true")
    p.add_argument("--t2s", action=argparse.BooleanOptionalAction, default=None,
                   help="Traditional->Simplified in cleaning (default: the pretraining manifest's, else true)")
    p.add_argument("--max_seq_length", type=int, default=128, help="longer rows are truncated and counted")
    p.add_argument("--batch_size", type=int, default=32, help="per process")
    p.add_argument("--num_epochs", type=float, default=3.0, help="epochs (a fraction runs part of the last one)")
    p.add_argument("--learning_rate", type=float, default=5e-5, help="peak LR (not scaled by process count)")
    p.add_argument("--warmup_proportion", type=float, default=0.1, help="share of steps with linear warmup")
    p.add_argument("--weight_decay", type=float, default=0.01, help="AdamW, not on LayerNorm and biases")
    p.add_argument("--clip_norm", type=float, default=1.0, help="global-norm clip; <= 0 disables")
    p.add_argument("--classifier_dropout", type=float, default=0.1, help="dropout on the pooled output")
    p.add_argument("--metric", choices=METRICS, default="accuracy", help="dev metric that picks the best epoch")
    p.add_argument("--early_stopping_patience", type=int, default=0,
                   help="stop after N epochs without a better dev metric; 0 never stops early")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                   help="as in pretrain: bf16/fp16 mixed precision with float32 variables, meant for GPUs")
    p.add_argument("--initial_loss_scale", type=float, default=2.0 ** 15,
                   help="fp16 only: halved after a non-finite step (which is skipped)")
    p.add_argument("--loss_scale_growth_interval", type=int, default=2000,
                   help="fp16 only: the scale doubles after this many finite steps in a row")
    p.add_argument("--horovod", action="store_true", help="data parallel under horovodrun (rank 0 writes)")
    p.add_argument("--seed", type=int, default=12345, help="head init, dropout and example order")
    p.add_argument("--deterministic", action="store_true", help="tf.config.experimental.enable_op_determinism()")
    p.add_argument("--eval_batch_size", type=int, default=64, help="dev/test/predict batch")
    p.add_argument("--keep_checkpoint_max", type=int, default=2, help="end-of-epoch checkpoints kept in ckpt/")
    p.add_argument("--debug_kill_after_epoch", type=int, default=0, help=argparse.SUPPRESS)
    return p


def build_predict_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m trainer_hooks.finetune predict",
                   "Classify raw sentences (one per line; a pair as two tab-separated sentences).")
    p.add_argument("--model_dir", required=True,
                   help="a finetune --output DIR, its export/ directory, or an export --tflite directory")
    p.add_argument("--input", required=True, help="raw text, one example per line")
    p.add_argument("--output", default=None, help="JSON lines (default: stdout)")
    p.add_argument("--batch_size", type=int, default=64, help="examples per forward pass")
    return p


# ---------------------------------------------------------------------------------------------- initialisation


# --------------------------------------------------------------------------------------------------------- model


def make_classifier(encoder: Any, num_labels: int, dropout: float, seed: int, dtype: str) -> Any:
    """Encoder + dropout + dense head on the pooled output; ``call(ids, mask, segments)`` -> float32 logits."""
    import keras
    import tensorflow as tf

    class Classifier(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="classifier", dtype=dtype)
            self.encoder = encoder
            self.dropout = keras.layers.Dropout(dropout, seed=seed + 1, dtype=self.dtype_policy)
            self.head = keras.layers.Dense(
                num_labels, name="classifier_head", dtype=self.dtype_policy,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=encoder.config.initializer_range,
                                                                      seed=seed + 2))

        def call(self, input_ids: Any, input_mask: Any, segment_ids: Any, training: bool = False) -> Any:
            _, pooled = self.encoder(input_ids, segment_ids, input_mask, training=training)
            return tf.cast(self.head(self.dropout(pooled, training=training)), tf.float32)

    model = Classifier()
    z = tf.zeros([1, 4], tf.int32)
    model(z, tf.ones_like(z), z)
    return model


def export_classifier(model: Any, output: str) -> str:
    """SavedModel with ``serve(input_ids, input_mask, segment_ids)`` -> ``{"probabilities": [B, C]}``."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec([None, None], tf.int32)

    def serve(input_ids: tf.Tensor, input_mask: tf.Tensor, segment_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": tf.nn.softmax(model(input_ids, input_mask, segment_ids, training=False), -1)}

    archive.add_endpoint("serve", serve, input_signature=[spec, spec, spec])
    saved = os.path.join(output, "saved_model")
    archive.write_out(saved, verbose=False)
    return saved


def predict_logits(model: Any, data: fd.Encoded, batch_size: int) -> Any:
    import numpy as np
    out = []
    for i in range(0, len(data), batch_size):
        out.append(model(data.input_ids[i:i + batch_size], data.input_mask[i:i + batch_size],
                         data.segment_ids[i:i + batch_size], training=False).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def evaluate(model: Any, data: fd.Encoded, num_labels: int, batch_size: int) -> dict[str, Any]:
    import numpy as np
    logits = predict_logits(model, data, batch_size)
    if not len(data):
        return fd.classification_metrics(np.zeros(0), np.zeros(0), num_labels)
    lp = logits - logits.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    out = fd.classification_metrics(data.labels, logits.argmax(-1), num_labels)
    out["loss"] = float(-lp[np.arange(len(data)), data.labels].mean())
    return out


# ------------------------------------------------------------------------------------------------------ training


def prepare(args: argparse.Namespace, is_chief: bool) -> dict[str, Any]:
    """Read, label-map and tokenise train/dev/test; refuses bad input with a message (``fd.DataError``)."""
    for opt in ("train", "dev", "test", "config", "vocab_file"):
        path = getattr(args, opt)
        if path and not os.path.isfile(path):
            raise fd.DataError(f"--{opt} {path}: no such file")
    check_output(args.output)
    init = resolve_init(args.init, args.model, args.config)
    from corpusflow.tokenize import DEFAULT_VOCAB
    vocab = args.vocab_file or init["vocab_file"] or DEFAULT_VOCAB
    check_vocab(vocab, init["config"])
    opts = init["options"]
    lower = args.do_lower_case if args.do_lower_case is not None else opts.get("do_lower_case", True)
    t2s = args.t2s if args.t2s is not None else opts.get("t2s", True)
    if args.max_seq_length > init["config"].max_position_embeddings:
        raise fd.DataError(f"--max_seq_length {args.max_seq_length} exceeds the model's max_position_embeddings "
                           f"{init['config'].max_position_embeddings}")
    encoder = fd.TextEncoder(vocab, args.max_seq_length, do_lower_case=lower, t2s=t2s)
    counts: dict[str, Any] = {}
    rows = {}
    for split in ("train", "dev", "test"):
        path = getattr(args, split)
        if path:
            counts[split] = fd.CounterDict()
            rows[split] = fd.read_rows(path, args.format, args.task, counts[split])
    labels = fd.build_labels(rows["train"])
    if len(labels) < 2:
        raise fd.DataError(f"{args.train}: {len(labels)} distinct label(s); classification needs at least 2")
    for split in ("dev", "test"):
        if split in rows:
            fd.check_labels(rows[split], labels, getattr(args, split))
    encoded = {s: fd.encode_rows(r, encoder, labels, counts[s]) for s, r in rows.items()}
    for s in encoded:
        if not len(encoded[s]):
            raise fd.DataError(f"{getattr(args, s)}: no usable rows ({counts[s].as_dict()})")
    if is_chief:
        for s, c in counts.items():
            _say(f"{s}: {getattr(args, s)}: " + ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in c.as_dict().items()))
    return {"init": init, "vocab_file": vocab, "do_lower_case": lower, "t2s": t2s, "labels": labels,
            "data": encoded, "counts": {s: c.as_dict() for s, c in counts.items()}}


# Files that mark a directory as a pretraining run or an export: fine-tuning must not write into one.
FOREIGN_OUTPUT = ("run_args.json", "pretraining.weights.h5", "import_report.json")
# Options that may change when a run is resumed (they change no result).
RESUME_FREE = ("output", "eval_batch_size", "keep_checkpoint_max", "debug_kill_after_epoch")


def check_output(output: str) -> None:
    """Refuse an ``--output`` that is a file, a pretraining run or export, or under no writable directory."""
    if os.path.exists(output):
        if not os.path.isdir(output):
            raise fd.DataError(f"--output {output} exists and is not a directory")
        foreign = [n for n in FOREIGN_OUTPUT if os.path.exists(os.path.join(output, n))]
        if foreign:
            raise fd.DataError(f"--output {output} holds {foreign[0]} (a pretraining run or export): give "
                               "fine-tuning a directory of its own")
        return
    parent = os.path.dirname(os.path.abspath(output))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise fd.DataError(f"--output {output}: cannot create it ({parent} is not a writable directory)")


def run_record(args: argparse.Namespace, world_size: int, prep: dict) -> dict:
    """What ``finetune_args.json`` stores: the options, the process count and the resolved text options."""
    return {**vars(args), "world_size": world_size, "vocab_file": prep["vocab_file"],
            "do_lower_case": prep["do_lower_case"], "t2s": prep["t2s"]}


def check_resume(output: str, record: dict) -> None:
    """A rerun into an output with a checkpoint resumes it: refuse when an option that shapes the run differs
    from the stored ``finetune_args.json`` (the resumed run would silently mix two configurations)."""
    path = os.path.join(output, "finetune_args.json")
    if not os.path.exists(path):
        return
    stored = read_json(path)
    changed = [k for k in sorted(set(stored) | set(record)) if k not in RESUME_FREE
               and stored.get(k) != record.get(k)]
    if changed:
        k = changed[0]
        raise fd.DataError(f"--output {output} holds a run made with --{k} {stored.get(k)!r}, not {record.get(k)!r}"
                           + (f" (and {len(changed) - 1} more differences)" if len(changed) > 1 else "")
                           + ": rerun with the same options to resume it, or use a new --output")


def train(args: argparse.Namespace) -> int:
    tf = cli.import_tensorflow_quietly()
    import numpy as np

    from trainer_hooks import distributed
    from trainer_hooks.optim import DynamicLossScale, WarmupPolynomialDecay, all_finite, build_optimizer, \
        clip_by_global_norm

    dist = distributed.make(args.horovod)
    chief = dist.rank == 0
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    if chief:
        # The pretraining trainer's own line for bf16/fp16 without a GPU (slow, or native on AMX/AVX512 CPUs).
        from trainer_hooks.pretrain import cpu_flags, precision_warning
        warning = precision_warning(args.precision, bool(tf.config.list_physical_devices("GPU")), cpu_flags())
        if warning:
            _say(warning)
    try:
        prep = prepare(args, chief)
        if tf.train.latest_checkpoint(os.path.join(args.output, "ckpt")):
            check_resume(args.output, run_record(args, dist.size, prep))
        encoder_model = load_encoder(args.model, prep["init"], PRECISIONS[args.precision], args.seed)
    except (fd.DataError, InitError, ValueError) as e:
        print(f"[finetune] refused: {e}", file=sys.stderr, flush=True)
        return 2
    labels, data = prep["labels"], prep["data"]
    num_labels = len(labels)
    model = make_classifier(encoder_model.encoder, num_labels, args.classifier_dropout, args.seed,
                            PRECISIONS[args.precision])
    variables = model.trainable_variables
    sources = [v.value for v in variables]
    optimizer = build_optimizer("adamw", variables, weight_decay=args.weight_decay)
    n_train = len(data["train"])
    # Every rank must run the same number of steps (each step all-reduces): with N processes an epoch uses
    # N * floor(n / N) examples, the n mod N left out changing with the epoch's order.
    per_rank = n_train // dist.size
    if per_rank < 1:
        print(f"[finetune] refused: {n_train} training examples for {dist.size} processes", file=sys.stderr)
        return 2
    steps_per_epoch = math.ceil(per_rank / args.batch_size)
    total_steps = max(1, math.ceil(args.num_epochs * steps_per_epoch))
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    schedule = WarmupPolynomialDecay(args.learning_rate, total_steps, int(args.warmup_proportion * total_steps))
    fp16 = args.precision == "fp16"
    loss_scale = DynamicLossScale(args.initial_loss_scale if fp16 else 1.0, dynamic=fp16,
                                  growth_interval=args.loss_scale_growth_interval)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    best_score = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
    best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    skipped = tf.Variable(0, dtype=tf.int64, trainable=False)
    stale = tf.Variable(0, dtype=tf.int64, trainable=False)  # epochs since the best one (early stopping)
    rng_state = [v.value for v in model.non_trainable_variables]
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, loss_scale=loss_scale, step=step, epoch=epoch,
                               best_score=best_score, best_epoch=best_epoch, skipped=skipped, stale=stale,
                               rng_state=rng_state)
    ckpt_dir = os.path.join(args.output, "ckpt")
    manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=args.keep_checkpoint_max)
    restored = manager.latest_checkpoint
    if restored:
        ckpt.restore(restored).assert_existing_objects_matched()
    dist.broadcast_variables([step, epoch, best_score, best_epoch, stale])
    start_epoch = int(epoch.numpy())
    epochs_path = os.path.join(args.output, "epochs.jsonl")
    if chief:
        os.makedirs(args.output, exist_ok=True)
        fd.write_labels(labels, os.path.join(args.output, "labels.txt"))
        prep["init"]["config"].to_json_file(os.path.join(args.output, "model_config.json"))
        with open(os.path.join(args.output, "finetune_args.json"), "w", encoding="utf-8") as f:
            json.dump(run_record(args, dist.size, prep), f, indent=2)
        history = [json.loads(ln) for ln in open(epochs_path, encoding="utf-8")] \
            if restored and os.path.exists(epochs_path) else []
        history = [h for h in history if h["epoch"] <= start_epoch]
        with open(epochs_path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(h) + "\n" for h in history)
        _say(f"{n_train} training examples, {num_labels} labels, {steps_per_epoch} steps/epoch, {total_steps} steps"
             + (f"; resumed from {restored} after epoch {start_epoch}" if restored else ""))

    def train_step(ids: tf.Tensor, mask: tf.Tensor, seg: tf.Tensor, y: tf.Tensor) -> dict:
        with tf.GradientTape() as tape:
            logits = model(ids, mask, seg, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
            scaled = loss * loss_scale.scale
        grads = dist.wrap_tape(tape).gradient(scaled, sources)
        grads = [tf.cast(tf.convert_to_tensor(g), tf.float32) / loss_scale.scale for g in grads]
        finite = all_finite(grads)
        grads, norm = clip_by_global_norm(grads, args.clip_norm)
        lr = schedule(step)
        optimizer.learning_rate = lr

        def apply() -> tf.Tensor:
            optimizer.apply(grads, variables)
            return tf.constant(True)

        tf.cond(finite, apply, lambda: tf.constant(False))
        skipped.assign_add(tf.cast(tf.logical_not(finite), tf.int64))
        loss_scale.update(finite)
        step.assign_add(1)
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), y), tf.float32))
        return {"loss": dist.average(loss), "accuracy": dist.average(acc), "learning_rate": lr}

    spec = tf.TensorSpec([None, args.max_seq_length], tf.int32)
    train_fn = tf.function(train_step, autograph=False,
                           input_signature=[spec, spec, spec, tf.TensorSpec([None], tf.int64)])
    tr = data["train"]
    synced = False
    stopped_early = False
    bad_epochs = int(stale.numpy())
    for ep in range(start_epoch + 1, num_epochs + 1):
        t0 = time.perf_counter()
        # Example order: a pure function of (seed, epoch); each rank takes every size-th example of it.
        order = np.random.default_rng([args.seed, ep]).permutation(n_train)[:per_rank * dist.size][dist.rank::dist.size]
        losses, accs = [], []
        for i in range(0, len(order), args.batch_size):
            if int(step.numpy()) >= total_steps:
                break
            b = order[i:i + args.batch_size]
            out = train_fn(tr.input_ids[b], tr.input_mask[b], tr.segment_ids[b], tr.labels[b])
            if not synced:
                dist.broadcast_variables(list(model.variables) + list(optimizer.variables))
                synced = True
            losses.append(float(out["loss"]))
            accs.append(float(out["accuracy"]))
        dev = evaluate(model, data["dev"], num_labels, args.eval_batch_size)
        score = dev[args.metric]
        improved = score > float(best_score.numpy())
        bad_epochs = 0 if improved else bad_epochs + 1
        record = {"epoch": ep, "step": int(step.numpy()), "train_loss": float(np.mean(losses)) if losses else None,
                  "train_accuracy": float(np.mean(accs)) if accs else None, "dev": dev, "best": improved,
                  "epochs_without_improvement": bad_epochs, "seconds": time.perf_counter() - t0}
        if improved:
            best_score.assign(score)
            best_epoch.assign(ep)
            if chief:
                tf.train.Checkpoint(model=model).write(os.path.join(args.output, "best", "model"))
        epoch.assign(ep)
        stale.assign(bad_epochs)
        if chief:
            manager.save(checkpoint_number=ep)
            with open(epochs_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            _say(f"epoch {ep}/{num_epochs} | step {record['step']}/{total_steps} | train_loss "
                 f"{record['train_loss']:.4f} | dev accuracy {dev['accuracy']:.4f} macro_f1 {dev['macro_f1']:.4f}"
                 + (" | best" if improved else "") + f" | {record['seconds']:.1f}s")
        if args.debug_kill_after_epoch and ep == args.debug_kill_after_epoch:
            os.kill(os.getpid(), 9)
        if args.early_stopping_patience and bad_epochs >= args.early_stopping_patience and ep < num_epochs:
            stopped_early = True
            if chief:
                _say(f"early stop: no better dev {args.metric} for {bad_epochs} epochs")
            break
    if not chief:
        return 0
    tf.train.Checkpoint(model=model).read(os.path.join(args.output, "best", "model")).expect_partial() \
        .assert_existing_objects_matched()
    final = {"dev": evaluate(model, data["dev"], num_labels, args.eval_batch_size)}
    if "test" in data:
        final["test"] = evaluate(model, data["test"], num_labels, args.eval_batch_size)
    export_dir = os.path.join(args.output, "export")
    if os.path.isdir(export_dir):
        shutil.rmtree(export_dir)
    os.makedirs(export_dir)
    export_classifier(model, export_dir)
    fd.write_labels(labels, os.path.join(export_dir, "labels.txt"))
    shutil.copyfile(prep["vocab_file"], os.path.join(export_dir, "vocab.txt"))
    prep["init"]["config"].to_json_file(os.path.join(export_dir, CONFIG_NAMES[args.model]))
    model.save_weights(os.path.join(export_dir, "classifier.weights.h5"))
    with open(os.path.join(export_dir, "finetune.json"), "w", encoding="utf-8") as f:
        json.dump({"task": args.task, "model": args.model, "num_labels": num_labels,
                   "max_seq_length": args.max_seq_length, "do_lower_case": prep["do_lower_case"],
                   "t2s": prep["t2s"], "classifier_dropout": args.classifier_dropout}, f, indent=2)
    with open(epochs_path, encoding="utf-8") as f:
        history = [json.loads(ln) for ln in f]
    metrics = {"task": args.task, "model": args.model, "init": args.init, "labels": labels,
               "best_epoch": int(best_epoch.numpy()), "metric": args.metric, "epochs": history,
               "stopped_early": stopped_early, "steps": int(step.numpy()), "skipped_steps": int(skipped.numpy()),
               "counts": prep["counts"], **final}
    with open(os.path.join(args.output, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2, ensure_ascii=False)
    _say(f"best epoch {metrics['best_epoch']}: dev accuracy {final['dev']['accuracy']:.4f} macro_f1 "
         f"{final['dev']['macro_f1']:.4f}" + (f"; test accuracy {final['test']['accuracy']:.4f}"
                                             if "test" in final else "") + f"; export {export_dir}")
    return 0


# ------------------------------------------------------------------------------------------------------- predict


def read_raw(path: str, pair: bool) -> list[fd.Row]:
    """Raw examples, one per line (pairs: two tab-separated sentences); blank lines are examples too."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if pair:
                parts = line.split("\t")
                if len(parts) != 2:
                    raise fd.DataError(f"{path}:{lineno}: a pair needs 2 tab-separated sentences, got {len(parts)}")
                rows.append(fd.Row(parts[0], parts[1], None, lineno))
            else:
                rows.append(fd.Row(line, None, None, lineno))
    return rows


def predict(argv: Sequence[str]) -> int:
    p = build_predict_parser()
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("--batch_size must be >= 1")
    tf = cli.import_tensorflow_quietly()
    import numpy as np
    try:
        if not os.path.isfile(args.input):
            raise fd.DataError(f"--input {args.input}: no such file")
        ex = load_export(args.model_dir)
        rows = read_raw(args.input, ex["meta"]["task"] == "pair")
    except (InitError, fd.DataError) as e:
        print(f"[finetune] refused: {e}", file=sys.stderr, flush=True)
        return 2
    counts = fd.CounterDict()
    enc = fd.encode_rows(rows, ex["encoder"], ex["labels"], counts, skip_empty=False)
    empty = {r.line for r in rows if not ex["encoder"].clean(r.text_a).strip()
             or (r.text_b is not None and not ex["encoder"].clean(r.text_b).strip())}
    saved = os.path.join(ex["dir"], "saved_model")
    if os.path.isdir(saved):
        serve = tf.saved_model.load(saved).signatures["serve"]
    else:  # an `export --tflite` directory of a classifier
        from trainer_hooks.tflite import Runner
        serve = Runner(os.path.join(ex["dir"], "model.tflite"))
    probs = []
    for i in range(0, len(enc), args.batch_size):
        out = serve(input_ids=tf.constant(enc.input_ids[i:i + args.batch_size]),
                    input_mask=tf.constant(enc.input_mask[i:i + args.batch_size]),
                    segment_ids=tf.constant(enc.segment_ids[i:i + args.batch_size]))
        probs.append(np.asarray(out["probabilities"]))
    p = np.concatenate(probs) if probs else np.zeros((0, len(ex["labels"])))
    sink = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for line, pr in zip(enc.lines, p):
            rec = {"line": int(line), "label": ex["labels"][int(pr.argmax())],
                   "probabilities": {lab: round(float(x), 6) for lab, x in zip(ex["labels"], pr)}}
            if int(line) in empty:
                rec["empty_sentence"] = True  # predicted all the same, from [CLS] [SEP] alone
            sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
    finally:
        if args.output:
            sink.close()
    c = counts.as_dict()
    _say(f"predicted {len(enc)} lines: truncated {c.get('finetune:truncated:long', 0)}, empty {len(empty)}")
    return 0


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse option values no run can use (``p.error``: one line, exit status 2)."""
    bad = [msg for ok, msg in (
        (args.batch_size >= 1, "--batch_size must be >= 1"),
        (args.eval_batch_size >= 1, "--eval_batch_size must be >= 1"),
        (args.num_epochs > 0, "--num_epochs must be > 0"),
        (args.learning_rate >= 0, "--learning_rate must be >= 0"),
        (0 <= args.warmup_proportion <= 1, "--warmup_proportion must be in [0, 1]"),
        (args.weight_decay >= 0, "--weight_decay must be >= 0"),
        (0 <= args.classifier_dropout < 1, "--classifier_dropout must be in [0, 1)"),
        (args.early_stopping_patience >= 0, "--early_stopping_patience must be >= 0"),
        (args.keep_checkpoint_max >= 1, "--keep_checkpoint_max must be >= 1"),
        (args.initial_loss_scale >= 1, "--initial_loss_scale must be >= 1"),
        (args.loss_scale_growth_interval >= 1, "--loss_scale_growth_interval must be >= 1"),
        (args.max_seq_length >= 3, "--max_seq_length must be >= 3 ([CLS] x [SEP])")) if not ok]
    if bad:
        p.error("; ".join(bad))


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "predict":
        return predict(argv[1:])
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
