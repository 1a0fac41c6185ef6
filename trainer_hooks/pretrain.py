"""Pretrain ALBERT or NEZHA on corpusflow TFRecords (custom TF2 loop, optional Horovod).

    python -m trainer_hooks.pretrain --input 'DIR/tfrecords/*' --manifest DIR/manifest.json \
        --model albert|nezha --config CONFIG.json --model_dir OUT --num_train_steps N \
        --train_batch_size B --learning_rate LR --optimizer lamb|adamw --precision fp32|bf16|fp16 [--horovod]

    horovodrun -np 2 -H localhost:2 python -m trainer_hooks.pretrain ... --horovod

``--train_batch_size`` is per process and per micro-batch: one optimizer step sees
``train_batch_size * gradient_accumulation_steps * processes`` examples, and the peak learning rate is multiplied
by the number of processes (linear scaling; ``--no_lr_scaling`` turns that off), not by the accumulation steps.

Writes to OUT: ``ckpt-*`` checkpoints (model, optimizer, loss scale, step, input position, dropout RNG state),
``train/`` TensorBoard events and ``train_log.jsonl`` (rank 0 only), ``model_config.json`` and ``run_args.json``.
Rank 0 reports on stderr: a progress line every ``--progress_every`` steps and at the last one (step, mean loss and
accuracies since the previous line, examples/s, ETA) and a line per checkpoint. A resumed run first drops the
steps after its checkpoint from ``train_log.jsonl`` and the TensorBoard events, so each step is recorded once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from typing import Any, Optional, Sequence

from trainer_hooks.cli import DefaultsHelpFormatter, import_tensorflow_quietly

tf = import_tensorflow_quietly()  # before anything else imports it: drops TF's import-time INFO lines

import numpy as np  # noqa: E402
from tensorflow.core.framework import summary_pb2  # noqa: E402

from trainer_hooks import data, distributed  # noqa: E402
from trainer_hooks.hardware import cpu_flags, precision_warning  # noqa: E402
from trainer_hooks.config import ModelConfig  # noqa: E402
from trainer_hooks.models import build_model  # noqa: E402
from trainer_hooks.optim import (DynamicLossScale, WarmupPolynomialDecay, all_finite, build_optimizer,  # noqa: E402
                                 clip_by_global_norm)

PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject option values no run can use (``p.error``: usage line, exit status 2)."""
    if args.gradient_accumulation_steps < 1:
        p.error("--gradient_accumulation_steps must be >= 1")
    if args.num_train_steps < 1:
        p.error("--num_train_steps must be >= 1")
    if args.log_every < 1 or args.progress_every < 1:
        p.error("--log_every and --progress_every must be >= 1")


def build_parser() -> argparse.ArgumentParser:
    """The pretrain CLI; ``--help`` names every default."""
    p = argparse.ArgumentParser(prog="python -m trainer_hooks.pretrain", description=__doc__.split("\n")[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--input", required=True, help="glob of TFRecord shards, e.g. 'DIR/tfrecords/*'")
    p.add_argument("--manifest", required=True, help="DIR/manifest.json written by the pipeline")
    p.add_argument("--model", required=True, choices=("albert", "nezha"), help="architecture")
    p.add_argument("--config", required=True,
                   help="albert_zh/NEZHA-style model config JSON (without vocab_size: the manifest's)")
    p.add_argument("--model_dir", required=True, help="output directory (checkpoints, events, logs)")
    p.add_argument("--num_train_steps", type=int, required=True, help="optimizer steps in total")
    add_training_options(p)
    return p


def add_training_options(p: argparse.ArgumentParser) -> None:
    """Every pretrain option after the data, model and output ones (shared with ``trainer_hooks.distill``)."""
    p.add_argument("--train_batch_size", type=int, default=32, help="per process, per micro-batch")
    p.add_argument("--learning_rate", type=float, default=1e-4, help="peak LR for one process")
    p.add_argument("--optimizer", choices=("lamb", "adamw"), default="lamb", help="both with decoupled weight decay")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                   help="bf16/fp16: mixed precision with float32 variables, meant for GPUs (slow on CPUs without "
                        "bf16/fp16 instructions)")
    p.add_argument("--horovod", action="store_true", help="data parallel under horovodrun")
    p.add_argument("--num_warmup_steps", type=int, default=0, help="linear LR warmup from 0")
    p.add_argument("--poly_power", type=float, default=1.0, help="polynomial decay power after warmup")
    p.add_argument("--weight_decay", type=float, default=0.01, help="not applied to LayerNorm and biases")
    p.add_argument("--beta_1", type=float, default=0.9, help="Adam/LAMB first-moment decay")
    p.add_argument("--beta_2", type=float, default=0.999, help="Adam/LAMB second-moment decay")
    p.add_argument("--epsilon", type=float, default=1e-6, help="Adam/LAMB epsilon")
    p.add_argument("--clip_norm", type=float, default=1.0, help="global-norm clip; <= 0 disables")
    p.add_argument("--gradient_accumulation_steps", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--no_lr_scaling", action="store_true", help="do not multiply the LR by the process count")
    p.add_argument("--initial_loss_scale", type=float, default=2.0 ** 15, help="fp16 only")
    p.add_argument("--loss_scale_growth_interval", type=int, default=2000, help="fp16 only")
    p.add_argument("--max_seq_length", type=int, default=None, help="default: the manifest's; if given, must equal it")
    p.add_argument("--max_predictions_per_seq", type=int, default=None,
                   help="default: the manifest's; if given, must equal it")
    p.add_argument("--vocab_file", default=None,
                   help="default: none (the manifest's vocab_file where one is needed); if given, its sha256 must "
                        "equal the manifest's")
    p.add_argument("--dynamic_masking", action="store_true",
                   help="re-draw whole-word masks in the graph every epoch from token_boundary (shards must have "
                        "it); needs the vocab (--vocab_file, else the manifest's vocab_file)")
    p.add_argument("--masked_lm_prob", type=float, default=None, help="dynamic masking; default: the manifest's")
    p.add_argument("--init_checkpoint", default=None,
                   help="RUN_DIR (its latest ckpt-N, e.g. from import_checkpoint) or a ckpt-N prefix: model weights "
                        "to start from, with a fresh optimizer at step 0; not used when --model_dir already has a "
                        "checkpoint (that run resumes)")
    p.add_argument("--save_checkpoints_steps", type=int, default=1000, help="and always at the last step")
    p.add_argument("--keep_checkpoint_max", type=int, default=5, help="older checkpoints are deleted")
    p.add_argument("--progress_every", type=int, default=100,
                   help="progress line on stderr every N steps and at the last step (loss, accuracy, "
                        "examples/s, ETA)")
    p.add_argument("--log_every", type=int, default=1, help="TensorBoard scalars every N steps")
    p.add_argument("--seed", type=int, default=12345, help="model init, dropout and input order")
    p.add_argument("--deterministic", action="store_true",
                   help="tf.config.experimental.enable_op_determinism(): bitwise-reproducible runs and resumes")
    p.add_argument("--shuffle_buffer", type=int, default=1000, help="records in the shuffle buffer; <= 1 disables")
    p.add_argument("--cycle_length", type=int, default=4, help="files read in parallel per process")
    p.add_argument("--intra_op_threads", type=int, default=0, help="0: CPU cores / local processes")
    p.add_argument("--inter_op_threads", type=int, default=0,
                   help="0: TensorFlow's choice (2 with several local processes)")
    # Test hooks, hidden from --help.
    p.add_argument("--debug_kill_at_step", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--debug_nonfinite_steps", default="", help=argparse.SUPPRESS)
    p.add_argument("--debug_dump_weights", default="", help=argparse.SUPPRESS)
    p.add_argument("--debug_seed_per_rank", action="store_true", help=argparse.SUPPRESS)


def _configure_threads(args: argparse.Namespace, local_size: int) -> None:
    intra = args.intra_op_threads or max(1, (os.cpu_count() or 1) // max(1, local_size))
    inter = args.inter_op_threads or (2 if local_size > 1 else 0)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:
        pass  # TF already initialised (main() called in-process, e.g. by tests): keep its thread pools


class Trainer:
    """Model, optimiser, loss scale, counters and checkpointing for one process."""

    def __init__(self, args: argparse.Namespace, dist: Any) -> None:
        self.args, self.dist = args, dist
        self.is_chief = dist.rank == 0
        self.manifest = data.load_manifest(args.manifest)
        self.config = load_config(args.config, self.manifest, announce=self.is_chief)
        shards = data.resolve_shards(args.input, self.manifest)
        data.check_run(self.manifest, self.config, shards, dist.size, max_seq_length=args.max_seq_length,
                       max_predictions_per_seq=args.max_predictions_per_seq, vocab_file=args.vocab_file)
        self.shards = data.rank_shards(shards, dist.rank, dist.size)
        per_rank = [sum(s.count for s in data.rank_shards(shards, r, dist.size)) for r in range(dist.size)]
        if self.is_chief and max(per_rank) > 1.1 * min(per_rank):
            # Not fatal (every rank loops over its files forever), but epochs then mean different things per rank.
            print(f"[trainer] warning: records per rank are unbalanced: {per_rank}; write shards of equal size "
                  "or a multiple of the process count", file=sys.stderr, flush=True)
        self.masking = self._dynamic_masking() if args.dynamic_masking else None
        self.pair_task = self.manifest.pair_task
        self.accum = args.gradient_accumulation_steps
        self.global_batch = args.train_batch_size * self.accum * dist.size

        # Same seed on every rank: identical initial weights even before the post-step-1 broadcast (the test
        # hook gives ranks different weights to prove that the broadcast happens).
        init_seed = args.seed + (dist.rank if args.debug_seed_per_rank else 0)
        self.model = build_model(args.model, self.config, dtype=PRECISIONS[args.precision], seed=init_seed,
                                 max_predictions_per_seq=self.manifest.max_predictions_per_seq)
        if args.init_checkpoint and not tf.train.latest_checkpoint(args.model_dir):
            self.init_from = load_init_checkpoint(self.model, args.init_checkpoint)
        self._build_extras()
        self.variables = self._trained_variables()
        self.sources = [v.value for v in self.variables]  # what the (Horovod) tape differentiates
        self.optimizer = build_optimizer(args.optimizer, self.variables, weight_decay=args.weight_decay,
                                         beta_1=args.beta_1, beta_2=args.beta_2, epsilon=args.epsilon)
        peak = args.learning_rate * (1 if args.no_lr_scaling else dist.size)
        self.schedule = WarmupPolynomialDecay(peak, args.num_train_steps, args.num_warmup_steps, args.poly_power)
        fp16 = args.precision == "fp16"
        self.loss_scale = DynamicLossScale(args.initial_loss_scale if fp16 else 1.0, dynamic=fp16,
                                           growth_interval=args.loss_scale_growth_interval)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.records_consumed = tf.Variable(0, dtype=tf.int64, trainable=False, name="records_consumed")
        self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_steps")
        self.accumulators = [tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False) for v in self.variables]
        # Dropout RNG state lives in Keras seed-generator variables that tf.train.Checkpoint does not reach
        # through the model; list them explicitly so a resumed run draws the same dropout masks.
        self.rng_state = [v.value for v in self.model.non_trainable_variables]
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, loss_scale=self.loss_scale, step=self.step,
            records_consumed=self.records_consumed, skipped_steps=self.skipped_steps, rng_state=self.rng_state,
            **self._extra_checkpoint_objects())
        self.manager = tf.train.CheckpointManager(self.checkpoint, args.model_dir,
                                                  max_to_keep=args.keep_checkpoint_max) if self.is_chief else None
        self._accumulate = tf.function(self._accumulate_fn, autograph=False)
        self._apply = tf.function(self._apply_fn, autograph=False)

    def _dynamic_masking(self) -> data.DynamicMasking:
        m = self.manifest
        if not m.token_boundary:
            raise data.InputRefused("refusing to start: --dynamic_masking needs shards written with "
                                    "token_boundary (pipeline option --token_boundary)")
        vocab = self.args.vocab_file or data.manifest_vocab_file(m)
        if vocab is None:
            raise data.InputRefused("refusing to start: --dynamic_masking needs the vocabulary: pass --vocab_file")
        prob = self.args.masked_lm_prob if self.args.masked_lm_prob is not None else m.masked_lm_prob
        return data.DynamicMasking.from_vocab(vocab, prob)

    # -- hooks (trainer_hooks.distill overrides them) ---------------------------------------------------------

    def _build_extras(self) -> None:
        """Objects built after the model, before the optimizer (none for pretraining)."""

    def _trained_variables(self) -> list:
        """The variables the optimizer updates (and the only ones the gradient tape records)."""
        return self.model.trainable_variables

    def _extra_checkpoint_objects(self) -> dict:
        """Checkpointed objects besides the model, optimizer and counters (none for pretraining)."""
        return {}

    def _forward(self, features: dict) -> dict:
        """Losses and metrics of one micro-batch, in training mode (``"loss"`` is what is minimised)."""
        return self._losses(self.model(features, training=True), features)

    def _progress(self) -> "Progress":
        return Progress(self.args.num_train_steps, self.global_batch, self.pair_task)

    # -- graph functions ---------------------------------------------------------------------------------------

    def _losses(self, outputs: dict, features: dict) -> dict:
        ids = features["masked_lm_ids"]
        weights = tf.cast(features["masked_lm_weights"], tf.float32)
        logits = outputs["mlm_logits"]
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=logits)
        denom = tf.reduce_sum(weights) + 1e-5
        hit = tf.cast(tf.equal(tf.argmax(logits, -1), ids), tf.float32)
        out = {"mlm_loss": tf.reduce_sum(ce * weights) / denom, "mlm_accuracy": tf.reduce_sum(hit * weights) / denom}
        loss = out["mlm_loss"]
        if self.pair_task != "none":
            labels = tf.reshape(features["next_sentence_labels"], [-1])
            sl = outputs["sentence_logits"]
            out[f"{self.pair_task}_loss"] = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=sl))
            out[f"{self.pair_task}_accuracy"] = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(sl, -1), labels),
                                                                       tf.float32))
            loss += out[f"{self.pair_task}_loss"]
        out["loss"] = loss
        return out

    def _accumulate_fn(self, features: dict, grad_multiplier: Any) -> dict:
        """Forward + backward of one micro-batch; adds the all-reduced gradient of the scaled loss."""
        # Only the trained variables are recorded: a distillation teacher's forward pass keeps no activations.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.sources)
            metrics = self._forward(features)
            # The multiplier is 1 except in the non-finite-step test hook.
            scaled = metrics["loss"] * self.loss_scale.scale * grad_multiplier / float(self.accum)
        grads = self.dist.wrap_tape(tape).gradient(scaled, self.sources)
        for acc, g in zip(self.accumulators, grads):
            acc.assign_add(tf.cast(tf.convert_to_tensor(g), tf.float32))
        names = sorted(metrics)
        averaged = tf.unstack(self.dist.average(tf.stack([metrics[n] for n in names])))
        return dict(zip(names, averaged))

    def _apply_fn(self) -> dict:
        """Unscale, check, clip and apply the accumulated gradient; a non-finite step is skipped and counted."""
        grads = [acc / self.loss_scale.scale for acc in self.accumulators]
        finite = all_finite(grads)
        clipped, norm = clip_by_global_norm(grads, self.args.clip_norm)
        lr = self.schedule(self.step)
        self.optimizer.learning_rate = lr

        def apply() -> tf.Tensor:
            self.optimizer.apply(clipped, self.variables)
            return tf.constant(True)

        tf.cond(finite, apply, lambda: tf.constant(False))
        self.skipped_steps.assign_add(tf.cast(tf.logical_not(finite), tf.int64))
        scale_used = tf.identity(self.loss_scale.scale)
        self.loss_scale.update(finite)
        for acc in self.accumulators:
            acc.assign(tf.zeros_like(acc))
        self.step.assign_add(1)
        self.records_consumed.assign_add(self.args.train_batch_size * self.accum)
        return {"finite": finite, "grad_norm": norm, "learning_rate": lr, "loss_scale": scale_used}

    # -- driver ------------------------------------------------------------------------------------------------

    def restore(self) -> Optional[str]:
        """Restore the latest checkpoint in model_dir (every rank that can see it), then agree on the step and
        input position with rank 0 so all ranks start reading at the same place."""
        path = tf.train.latest_checkpoint(self.args.model_dir)
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        self.dist.broadcast_variables([self.step, self.records_consumed, self.skipped_steps])
        return path

    def sync_all_state(self) -> None:
        """Broadcast everything from rank 0: done once, after the first step of a process (Horovod's rule, so
        optimizer slots exist everywhere and ranks that could not read a checkpoint catch up)."""
        self.dist.broadcast_variables(list(self.model.variables) + list(self.optimizer.variables)
                                      + [self.loss_scale.scale, self.loss_scale.good_steps])

    def dataset(self) -> tf.data.Dataset:
        return data.make_dataset(self.manifest, self.shards, self.args.train_batch_size,
                                 seed=self.args.seed, records_consumed=int(self.records_consumed.numpy()),
                                 shuffle_buffer=self.args.shuffle_buffer, cycle_length=self.args.cycle_length,
                                 masking=self.masking)

    def train(self) -> dict:
        args = self.args
        restored = self.restore()
        log_path = os.path.join(args.model_dir, "train_log.jsonl")
        start_step = int(self.step.numpy())
        writer = None
        progress = self._progress()
        if self.is_chief:
            # Steps after the restored checkpoint are about to be redone: their log lines and TensorBoard
            # events go, so that every step is recorded exactly once.
            _truncate_log(log_path, start_step)
            purged = purge_events(os.path.join(args.model_dir, "train"), start_step)
            writer = tf.summary.create_file_writer(os.path.join(args.model_dir, "train"))
            if restored:
                _say(f"resumed from {restored} at step {start_step}, {int(self.records_consumed.numpy())} "
                     f"records consumed per rank" + (f"; dropped {purged} TensorBoard events after step "
                                                     f"{start_step}" if purged else ""))
            elif getattr(self, "init_from", None):
                _say(f"model initialised from {self.init_from} (optimizer fresh, step 0)")
        nonfinite = {int(s) for s in args.debug_nonfinite_steps.split(",") if s.strip()}
        it = iter(self.dataset())
        last: dict = {}
        with open(log_path, "a", encoding="utf-8") if self.is_chief else _NullFile() as log:
            while int(self.step.numpy()) < args.num_train_steps:
                t0 = time.perf_counter()
                step = int(self.step.numpy()) + 1
                mult = tf.constant(math.inf if step in nonfinite else 1.0, tf.float32)
                sums: dict[str, float] = {}
                for _ in range(self.accum):
                    for k, v in self._accumulate(next(it), mult).items():
                        sums[k] = sums.get(k, 0.0) + float(v) / self.accum
                applied = {k: v.numpy() for k, v in self._apply().items()}
                if step == start_step + 1:
                    self.sync_all_state()
                dt = time.perf_counter() - t0
                record = {"step": step, **{k: _finite_or_none(v) for k, v in sorted(sums.items())},
                          "learning_rate": float(applied["learning_rate"]),
                          "loss_scale": float(applied["loss_scale"]),
                          "grad_norm": _finite_or_none(applied["grad_norm"]),
                          "skipped": not bool(applied["finite"]), "skipped_steps": int(self.skipped_steps.numpy()),
                          "examples_per_sec": self.global_batch / dt, "step_time_s": dt}
                last = record
                if self.is_chief:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    final = step == args.num_train_steps
                    if step % args.log_every == 0 or final:
                        with writer.as_default(step=step):
                            for k, v in record.items():
                                if k not in ("step", "skipped") and v is not None:
                                    _scalar_summary(k, v, step)
                    progress.add(record)
                    if step % args.progress_every == 0 or final:
                        writer.flush()
                        _say(progress.line(step))
                    if step % args.save_checkpoints_steps == 0 or final:
                        # Events up to a checkpoint are on disk before it: a crash after it loses none of them.
                        writer.flush()
                        path = self.manager.save(checkpoint_number=step)
                        _say(f"saved checkpoint {path} (step {step})")
                if args.debug_kill_at_step and step == args.debug_kill_at_step:
                    os.kill(os.getpid(), signal.SIGKILL)  # a real, unclean death for the resume test
        if writer is not None:
            writer.flush()
        if args.debug_dump_weights:
            os.makedirs(args.debug_dump_weights, exist_ok=True)
            np.savez(os.path.join(args.debug_dump_weights, f"weights_rank{self.dist.rank}.npz"),
                     **{v.path: v.numpy() for v in self.model.variables})
        return last


def load_init_checkpoint(model: Any, init: str) -> str:
    """Assign ``model`` the weights of a run directory's latest checkpoint or of a ``ckpt-N`` prefix (model only:
    optimizer, step and input position stay fresh). A checkpoint of another shape is refused, naming it."""
    path = tf.train.latest_checkpoint(init) if tf.io.gfile.isdir(init) else init
    if not path or not tf.io.gfile.exists(path + ".index"):
        raise data.InputRefused(f"refusing to start: --init_checkpoint {init} is neither a run directory with a "
                                "checkpoint nor a checkpoint prefix")
    from trainer_hooks.finetune_init import shape_misfits
    misfits = shape_misfits(model, {"source": "checkpoint", "checkpoint": path})
    if misfits:  # named here: TensorFlow's own error names only the last component ("kernel:0")
        more = f" (and {len(misfits) - 1} more)" if len(misfits) > 1 else ""
        raise data.InputRefused(f"refusing to start: --init_checkpoint {path} does not fit --model/--config: "
                                f"{misfits[0]}{more}")
    try:
        tf.train.Checkpoint(model=model).read(path).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
        raise data.InputRefused(f"refusing to start: --init_checkpoint {path} does not fit --model/--config: "
                                f"{str(e).splitlines()[0][:300]}") from None
    return path


def _say(message: str) -> None:
    """One line of the trainer's running commentary (rank 0 only; stderr, so stdout stays for results)."""
    print(f"[trainer] {message}", file=sys.stderr, flush=True)


class Progress:
    """The numbers of the progress line: means over the steps since the previous line, ETA from their pace."""

    def __init__(self, total_steps: int, global_batch: int, pair_task: str) -> None:
        self.total, self.global_batch = total_steps, global_batch
        self.pair_key = f"{pair_task}_accuracy" if pair_task != "none" else None
        self.started = self.window_start = time.perf_counter()
        self.window: list[dict] = []

    def add(self, record: dict) -> None:
        self.window.append(record)

    def line(self, step: int) -> str:
        now = time.perf_counter()
        recs, self.window = self.window, []
        elapsed, self.window_start = now - self.window_start, now
        rate = len(recs) / elapsed if elapsed > 0 else 0.0  # steps per second, logging and input included

        def mean(key: str) -> str:
            vals = [r[key] for r in recs if r.get(key) is not None]
            return f"{sum(vals) / len(vals):.4f}" if vals else "nan"

        parts = [f"step {step}/{self.total}", f"loss {mean('loss')}", f"mlm_acc {mean('mlm_accuracy')}"]
        if self.pair_key:
            parts.append(f"{self.pair_key.split('_')[0]}_acc {mean(self.pair_key)}")
        skipped = sum(1 for r in recs if r.get("skipped"))
        if skipped:
            parts.append(f"skipped {skipped}")
        parts.append(f"{rate * self.global_batch:.1f} examples/s")
        remaining = self.total - step
        parts.append(f"elapsed {_duration(now - self.started)}")
        parts.append(f"eta {_duration(remaining / rate) if rate > 0 else '?'}")
        return " | ".join(parts)


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m07s`` or ``12s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def load_config(path: str, manifest: data.Manifest, announce: bool = True) -> ModelConfig:
    """The model config at ``path``; a config without ``vocab_size`` takes the manifest's."""
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if raw.get("vocab_size") is None:
        raw["vocab_size"] = manifest.vocab_size
        if announce:
            _say(f"{path} sets no vocab_size: using the manifest's {manifest.vocab_size}")
    return ModelConfig.from_dict(raw)


def purge_events(logdir: str, keep_through_step: int) -> int:
    """Drop TensorBoard events with a step after ``keep_through_step`` from every events file in ``logdir``.

    Events files are TFRecord-framed ``Event`` protos: each file is read back, and rewritten (temp file, then
    rename) when it holds later steps. A file left with no summaries is removed. A torn last record, from a
    process killed while writing, is dropped too. Returns the number of events dropped.
    """
    from tensorflow.core.util import event_pb2

    if not tf.io.gfile.isdir(logdir):
        return 0
    dropped = 0
    for path in sorted(tf.io.gfile.glob(os.path.join(logdir, "*tfevents*"))):
        kept: list[bytes] = []
        changed = False
        try:
            for raw in tf.data.TFRecordDataset(path):
                blob = raw.numpy()
                if event_pb2.Event.FromString(blob).step > keep_through_step:
                    dropped += 1
                    changed = True
                else:
                    kept.append(blob)
        except tf.errors.DataLossError:
            changed = True  # torn tail: keep what was read before it
        if not changed:
            continue
        if not any(event_pb2.Event.FromString(b).HasField("summary") for b in kept):
            tf.io.gfile.remove(path)  # only the file_version header is left
            continue
        tmp = os.path.join(logdir, ".purge.tmp")  # no "tfevents" in the name: TensorBoard never reads it
        with tf.io.TFRecordWriter(tmp) as w:
            for blob in kept:
                w.write(blob)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    return dropped


def _scalar_summary(name: str, value: float, step: int) -> None:
    """A TensorBoard scalar without the ``tensorboard`` package (tensorflow-cpu 2.21 does not pull it in):
    the same tensor + "scalars" plugin metadata that ``tf.summary.scalar`` writes."""
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(name, tf.constant(float(value), tf.float32), step=step, metadata=metadata)


class _NullFile:
    def __enter__(self) -> "_NullFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def write(self, _: str) -> None:
        pass

    def flush(self) -> None:
        pass


def _finite_or_none(x: Any) -> Optional[float]:
    x = float(x)
    return x if math.isfinite(x) else None


def _truncate_log(path: str, keep_through_step: int) -> None:
    """On resume, drop log lines of steps after the restored checkpoint (they are about to be redone)."""
    if not os.path.exists(path):
        return
    lines = []
    with open(path, encoding="utf-8") as f:
        for ln in f:
            try:
                step = json.loads(ln)["step"]
            except (ValueError, KeyError, TypeError):
                continue  # blank, or the torn last line of a process killed mid-write
            if step <= keep_through_step:
                lines.append(ln)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    dist = distributed.make(args.horovod)
    _configure_threads(args, dist.local_size)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    if dist.rank == 0:
        warning = precision_warning(args.precision, bool(tf.config.list_physical_devices("GPU")), cpu_flags())
        if warning:
            _say(warning)
    try:
        trainer = Trainer(args, dist)
    except data.InputRefused as e:
        print(f"[trainer] rank {dist.rank}: {e}", file=sys.stderr, flush=True)
        return 2
    if dist.rank == 0:
        os.makedirs(args.model_dir, exist_ok=True)
        trainer.config.to_json_file(os.path.join(args.model_dir, "model_config.json"))
        with open(os.path.join(args.model_dir, "run_args.json"), "w", encoding="utf-8") as f:
            json.dump({**vars(args), "world_size": dist.size, "pair_task": trainer.pair_task,
                       "max_seq_length": trainer.manifest.max_seq_length,
                       "max_predictions_per_seq": trainer.manifest.max_predictions_per_seq}, f, indent=2)
    last = trainer.train()
    if dist.rank == 0:
        print(f"[trainer] done: {json.dumps(last)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
