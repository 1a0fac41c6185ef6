"""General distillation (TinyBERT) of a pretrained teacher into a smaller ALBERT or NEZHA student.

    python -m trainer_hooks.distill --teacher PATH --student_config JSON --input 'DIR/tfrecords/*' \
        --manifest DIR/manifest.json --model_dir OUT [--layer_map uniform|i:j,...] \
        [--loss_weights emb=1,hidden=1,attn=1,logits=1] [--temperature T] [... the pretrain options]

``--teacher`` is what ``finetune --init`` accepts (a pretraining or distillation run directory, an
``import_checkpoint`` run directory, a ``RUN/ckpt-N`` prefix or an export directory). The teacher runs in
inference mode: it is not differentiated, has no optimizer state and is not saved. The student trains on the
pretraining shards (the manifest contract is enforced as in ``pretrain``) with the pretrain loop: precisions,
gradient accumulation, Horovod, checkpoints and exact resume. OUT is laid out like a pretraining run
(``ckpt-N`` with the student under ``model``, ``model_config.json``, ``run_args.json``, ``train_log.jsonl``), so
``export``, ``finetune --init OUT`` and a further ``distill --teacher OUT`` read it as they read a pretraining run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Optional, Sequence

from trainer_hooks import pretrain
from trainer_hooks.pretrain import tf  # TensorFlow imported without its import-time INFO lines

import numpy as np  # noqa: E402

from trainer_hooks import cli, data, distributed  # noqa: E402
from trainer_hooks.distill_losses import (DEFAULT_LOSS_WEIGHTS, LOSSES, MapError, Projections,  # noqa: E402
                                          check_plan, distill_losses, parse_layer_map, parse_loss_weights)
from trainer_hooks.models.common import dummy_features  # noqa: E402

KINDS = ("albert", "nezha")
EXPORT_CONFIGS = {"albert_config.json": "albert", "bert_config.json": "nezha"}


def _say(message: str) -> None:
    print(f"[distill] {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The distill CLI: the distillation options, then every pretrain option; ``--help`` names every default."""
    p = cli.parser("python -m trainer_hooks.distill", __doc__.split("\n")[0])
    p.add_argument("--teacher", required=True,
                   help="teacher: a run directory (pretrain, distill or import_checkpoint), RUN/ckpt-N, or an export")
    p.add_argument("--teacher_model", choices=KINDS, default=None,
                   help="teacher architecture (default: the teacher's run_args.json, or its export's config name)")
    p.add_argument("--student_config", required=True,
                   help="student model config JSON (without vocab_size: the manifest's), e.g. "
                        "trainer_hooks/configs/tinybert_4l_312.json")
    p.add_argument("--model", choices=KINDS, default=None, help="student architecture (default: the teacher's)")
    p.add_argument("--input", required=True, help="glob of TFRecord shards, e.g. 'DIR/tfrecords/*'")
    p.add_argument("--manifest", required=True, help="DIR/manifest.json written by the pipeline")
    p.add_argument("--model_dir", required=True, help="output directory (the student's run directory)")
    p.add_argument("--num_train_steps", type=int, required=True, help="optimizer steps in total")
    p.add_argument("--layer_map", default="uniform",
                   help="'uniform' (student layer i <-> teacher layer i*T/S, rounded up, and 0:0, the embedding "
                        "outputs) or STUDENT:TEACHER pairs such as 0:0,1:3,2:6")
    p.add_argument("--loss_weights", default=DEFAULT_LOSS_WEIGHTS,
                   help=f"NAME=WEIGHT for {', '.join(LOSSES)} (unnamed: 0): embedding MSE, hidden-state MSE, "
                        "attention-score MSE, soft cross-entropy on the MLM logits, the student's own MLM loss on "
                        "the shards' labels")
    p.add_argument("--temperature", type=float, default=1.0, help="divides both logits of the soft cross-entropy")
    pretrain.add_training_options(p)
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    pretrain.check_args(p, args)
    if not args.temperature > 0:
        p.error("--temperature must be > 0")
    try:
        parse_loss_weights(args.loss_weights)
    except MapError as e:
        p.error(str(e))
    args.config = args.student_config  # the name the pretrain Trainer reads the model config under
    return args


# ------------------------------------------------------------------------------------------------------ the plan


def teacher_kind(path: str, override: Optional[str]) -> str:
    """The teacher's architecture: ``--teacher_model``, else its run's ``run_args.json``, else its export's
    config file name. Refuses a path that is no model."""
    if override:
        return override
    if not (os.path.exists(path) or tf.io.gfile.exists(path + ".index")):
        raise data.InputRefused(f"refusing to start: --teacher {path} does not exist")
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "pretraining.weights.h5")):
        kinds = {k for name, k in EXPORT_CONFIGS.items() if os.path.exists(os.path.join(path, name))}
        if len(kinds) == 1:
            return kinds.pop()
        raise data.InputRefused(f"refusing to start: --teacher {path} is an export with "
                                f"{'both' if kinds else 'neither'} of albert_config.json and bert_config.json: "
                                "pass --teacher_model")
    run_dir = path if os.path.isdir(path) else os.path.dirname(path) or "."
    run_args = os.path.join(run_dir, "run_args.json")
    kind = None
    if os.path.exists(run_args):
        with open(run_args, encoding="utf-8") as f:
            kind = json.load(f).get("model")
    if kind in KINDS:
        return kind
    if not os.path.isdir(path) and not tf.io.gfile.exists(path + ".index") or \
            os.path.isdir(path) and not tf.train.latest_checkpoint(path):
        raise data.InputRefused(f"refusing to start: --teacher {path} is not a model (no ckpt-N checkpoint, "
                                "no pretraining.weights.h5 export)")
    raise data.InputRefused(f"refusing to start: cannot tell the architecture of --teacher {path} (no run_args.json "
                            "naming it): pass --teacher_model")


def make_plan(args: argparse.Namespace, announce: bool = True) -> dict[str, Any]:
    """Everything checkable before any model is built: the teacher (resolved as ``finetune --init`` does), the
    student config against teacher and manifest, the layer map and the loss weights. Raises ``InputRefused`` or
    ``MapError`` with one line."""
    from trainer_hooks.finetune_init import InitError, resolve_init

    manifest = data.load_manifest(args.manifest)
    try:
        student = pretrain.load_config(args.student_config, manifest, announce=announce)
    except (OSError, ValueError, TypeError) as e:
        raise data.InputRefused(f"refusing to start: --student_config {args.student_config}: {e}") from None
    kind = teacher_kind(args.teacher, args.teacher_model)
    if os.path.isdir(args.teacher) and os.path.realpath(args.teacher) == os.path.realpath(args.model_dir):
        raise data.InputRefused("refusing to start: --model_dir is the teacher's own directory")
    try:
        init = resolve_init(args.teacher, kind, None)
    except InitError as e:
        raise data.InputRefused(f"refusing to start: --teacher {args.teacher} is not a model: {e}") from None
    teacher = init["config"]
    problems = []
    if teacher.vocab_size != manifest.vocab_size:
        problems.append(f"teacher vocab_size {teacher.vocab_size} != manifest vocab_size {manifest.vocab_size}")
    if student.vocab_size != teacher.vocab_size:
        problems.append(f"student config vocab_size {student.vocab_size} != teacher vocab_size {teacher.vocab_size}")
    if student.max_position_embeddings != teacher.max_position_embeddings:
        problems.append(f"student config max_position_embeddings {student.max_position_embeddings} != teacher's "
                        f"{teacher.max_position_embeddings}")
    for who, cfg in (("teacher", teacher), ("student config", student)):
        if manifest.max_seq_length > cfg.max_position_embeddings:
            problems.append(f"manifest max_seq_length {manifest.max_seq_length} > {who} max_position_embeddings "
                            f"{cfg.max_position_embeddings}")
    vocab = init.get("vocab_file")
    if vocab and os.path.exists(vocab) and manifest.vocab_sha256 and \
            data.sha256_file(vocab).lower() != str(manifest.vocab_sha256).lower():
        problems.append(f"the teacher's vocab {vocab} is not the manifest's (sha256 differs)")
    if problems:
        raise data.InputRefused("refusing to start: " + "; ".join(problems))
    weights = parse_loss_weights(args.loss_weights)
    layer_map = parse_layer_map(args.layer_map, student.num_hidden_layers, teacher.num_hidden_layers)
    check_plan(layer_map, weights)
    return {"teacher_kind": kind, "teacher_init": init, "student_kind": args.model or kind, "layer_map": layer_map,
            "loss_weights": weights}


# ------------------------------------------------------------------------------------------------------ training


class Distiller(pretrain.Trainer):
    """The pretrain loop with a frozen teacher beside the student and the distillation losses."""

    def __init__(self, args: argparse.Namespace, dist: Any, plan: dict[str, Any]) -> None:
        self.plan = plan
        args.model = plan["student_kind"]
        super().__init__(args, dist)

    def _build_extras(self) -> None:
        from trainer_hooks.finetune_init import InitError, load_encoder

        init = self.plan["teacher_init"]
        try:
            self.teacher = load_encoder(self.plan["teacher_kind"], init, pretrain.PRECISIONS[self.args.precision],
                                        self.args.seed)
        except (InitError, ValueError, OSError) as e:
            raise data.InputRefused(f"refusing to start: --teacher {self.args.teacher} does not load: "
                                    f"{str(e).splitlines()[0][:300]}") from None
        self.teacher.trainable = False  # no trainable variables: nothing of it reaches a tape or the optimizer
        w = self.plan["loss_weights"]
        self.projections = Projections(self.config.hidden_size, init["config"].hidden_size, embedding=w["emb"] > 0,
                                       hidden=w["hidden"] > 0, seed=self.args.seed,
                                       initializer_range=self.config.initializer_range,
                                       dtype=pretrain.PRECISIONS[self.args.precision])
        self.loss_args = (self.plan["layer_map"], w, self.args.temperature, self.projections)

    def _forward(self, features: dict) -> dict:
        teacher = tf.nest.map_structure(tf.stop_gradient,
                                        self.teacher(features, training=False, output_internals=True))
        student = self.model(features, training=True, output_internals=True)
        return distill_losses(student, teacher, features, *self.loss_args)

    def _trained_variables(self) -> list:
        """Student and projection variables that the enabled losses reach (found by one eager probe on dummy
        features): the pooler and sentence head, which no distillation loss reaches, get no optimizer slots."""
        candidates = list(self.model.trainable_variables) + list(self.projections.trainable_variables)
        rng = [v.numpy() for v in self.model.non_trainable_variables]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in candidates])
            loss = self._forward(dummy_features(8, self.manifest.max_predictions_per_seq))["loss"]
        grads = tape.gradient(loss, [v.value for v in candidates])
        for v, value in zip(self.model.non_trainable_variables, rng):
            v.assign(value)  # the probe must not advance the dropout RNG
        return [v for v, g in zip(candidates, grads) if g is not None]

    def _extra_checkpoint_objects(self) -> dict:
        return {"projections": self.projections}

    def _progress(self) -> pretrain.Progress:
        return pretrain.Progress(self.args.num_train_steps, self.global_batch, "none")

    def sync_all_state(self) -> None:
        super().sync_all_state()
        self.dist.broadcast_variables(list(self.projections.variables))


def _param_count(variables: Sequence[Any]) -> int:
    return int(sum(np.prod(v.shape) for v in variables))


def _one_line(e: BaseException) -> str:
    """A refusal as one line (``check_run`` lists its problems on several)."""
    text = str(e).replace(":\n  - ", ": ").replace("\n  - ", "; ").replace("\n", " ")
    return text if text.startswith("refusing to start") else f"refusing to start: {text}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    dist = distributed.make(args.horovod)
    pretrain._configure_threads(args, dist.local_size)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    chief = dist.rank == 0
    if chief:
        warning = pretrain.precision_warning(args.precision, bool(tf.config.list_physical_devices("GPU")),
                                             pretrain.cpu_flags())
        if warning:
            _say(warning)
    try:
        plan = make_plan(args, announce=chief)
        trainer = Distiller(args, dist, plan)
    except (data.InputRefused, MapError) as e:
        print(f"[distill] rank {dist.rank}: {_one_line(e)}", file=sys.stderr, flush=True)
        return 2
    init = plan["teacher_init"]
    summary = {"teacher": os.path.abspath(args.teacher), "teacher_model": plan["teacher_kind"],
               "teacher_source": init.get("checkpoint") or init.get("weights_h5"),
               "teacher_parameters": _param_count(trainer.teacher.variables),
               "student_parameters": _param_count(trainer.model.variables),
               "projection_parameters": _param_count(trainer.projections.variables),
               "trained_variables": len(trainer.variables), "layer_map": plan["layer_map"],
               "loss_weights": plan["loss_weights"], "temperature": args.temperature}
    if chief:
        os.makedirs(args.model_dir, exist_ok=True)
        trainer.config.to_json_file(os.path.join(args.model_dir, "model_config.json"))
        with open(os.path.join(args.model_dir, "run_args.json"), "w", encoding="utf-8") as f:
            json.dump({**vars(args), "world_size": dist.size, "pair_task": trainer.pair_task,
                       "max_seq_length": trainer.manifest.max_seq_length,
                       "max_predictions_per_seq": trainer.manifest.max_predictions_per_seq,
                       "distill": summary}, f, indent=2)
        _say(f"teacher {plan['teacher_kind']} {summary['teacher_parameters']:,} parameters "
             f"({summary['teacher_source']}) -> student {plan['student_kind']} {summary['student_parameters']:,} "
             f"parameters; layer map {', '.join(f'{i}:{j}' for i, j in plan['layer_map'])}; losses "
             + ", ".join(f"{k}={v:g}" for k, v in plan["loss_weights"].items() if v))
    last = trainer.train()
    if args.debug_dump_weights:
        np.savez(os.path.join(args.debug_dump_weights, f"teacher_rank{dist.rank}.npz"),
                 **{v.path: v.numpy() for v in trainer.teacher.variables})
    if chief:
        print(f"[distill] done: {json.dumps(last)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
