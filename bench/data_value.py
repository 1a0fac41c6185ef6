"""What the data is worth: the same small model pretrained for the same number of tokens on shards built from the
same raw text under different pipeline configurations, then MLM accuracy on held-out clean text and OCNLI.

    nice -n 19 python bench/data_value.py [--setting cpu|gpu] [--corpus DIR] [--work DIR] [--json OUT]

Steps (each one's result is kept in ``WORK/results/``; the same command again continues where it stopped):
1. Split the raw corpus (default ``../shared/corpus``) into training and held-out documents before any cleaning
   (``bench/data_value_split.py``: seeded by document id; training documents sharing a 13-gram with a held-out one
   are left out, so the evaluation text is unseen by every model).
2. ``python -m pipelines.build`` the held-out documents with the default options (the clean evaluation set; once
   more with token-level masking), and the training documents once per configuration (``CONFIGS``).
3. ``python -m trainer_hooks.pretrain`` the same ALBERT-tiny on each build for the same number of non-padding
   tokens (steps = tokens / (batch x the build's mean tokens per instance); the tokens a run really read are
   replayed from its input stream and reported).
4. MLM accuracy of each run on every held-out instance; OCNLI dev accuracy after fine-tuning on train.3k
   (``python -m trainer_hooks.finetune``, pieces of ``bench/finetune_bench.py``), several seeds, plus random init.
5. Distillation (when ``trainer_hooks/distill.py`` exists): the default-data model as teacher, a smaller student
   distilled from it (``python -m trainer_hooks.distill``), and the same student pretrained from scratch for the
   same estimated FLOPs (teacher forward + student training), both scored like the others.

A difference "exceeds the seed spread" when the two sets of fine-tuning seeds do not overlap (every run of one
beats every run of the other); |difference| / standard error of the difference is printed beside it. OCNLI is
CC BY-NC: it is read from ``../shared/eval/ocnli`` and never copied.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.data_value_report import compare, majority_share, print_table  # noqa: E402
from bench.data_value_split import SplitError, split_corpus  # noqa: E402
from bench import finetune_bench  # noqa: E402

# Build flags of each configuration, on top of the shared ones. "plain" switches off every cleaning and dedup
# step that has a flag; what it still does (normalisation, two filters, instance checks) is in the README.
CONFIGS = {
    "default": [],
    "plain": ["--t2s", "false", "--min_chars", "0", "--max_chars", str(10 ** 9), "--min_cjk_ratio", "0",
              "--max_repeated_line_ratio", "1", "--pii", "off", "--exact_dedup", "false", "--line_dedup", "false",
              "--near_dedup", "false", "--masking", "token", "--mask_decision", "per_token"],
    "default_token": ["--masking", "token", "--mask_decision", "per_token"],  # masking alone
}
STUDENT = {"embedding_size": 128, "hidden_size": 312, "num_hidden_layers": 2, "num_attention_heads": 12,
           "intermediate_size": 1248, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
           "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 512, "type_vocab_size": 2,
           "initializer_range": 0.02, "share_type": "none"}


@dataclasses.dataclass(frozen=True)
class Setting:
    configs: tuple[str, ...]
    pretrain_tokens: int          # non-padding tokens each model reads
    distill_tokens: int           # tokens the student reads while distilled
    batch: int = 32
    learning_rate: float = 5e-4   # AdamW: LAMB learns slowly on runs this short
    warmup: float = 0.1
    precision: str = "auto"       # bf16 where the CPU (or a GPU) runs it natively, else fp32
    pretrain_seeds: tuple[int, ...] = (12345,)
    ft_seeds: tuple[int, ...] = (1, 2, 3)
    ft_epochs: int = 2
    ft_lr: float = 1e-4
    ft_batch: int = 32
    ft_seq: int = 64
    heldout_share: float = 0.05
    max_seq_length: int = 128
    dupe_factor: int = 2
    num_shards: int = 4
    split_seed: int = 12345


SETTINGS = {
    # About 50 minutes on 2 idle cores (see the README for the measured wall time).
    "cpu": Setting(configs=("default", "plain"), pretrain_tokens=1_500_000, distill_tokens=800_000),
    # One GPU: longer pretraining (several epochs of the corpus), the masking ablation, more seeds.
    "gpu": Setting(configs=("default", "plain", "default_token"), pretrain_tokens=40_000_000,
                   distill_tokens=20_000_000, batch=128, learning_rate=1e-3, pretrain_seeds=(12345, 23456, 34567),
                   ft_seeds=(1, 2, 3, 4, 5), ft_epochs=5, dupe_factor=5, num_shards=8),
}


class Bench:
    """Runs the steps, keeping each result as JSON so that a rerun skips what is done."""

    def __init__(self, args: argparse.Namespace, setting: Setting) -> None:
        self.args, self.s, self.work = args, setting, args.work
        self.env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.timings: dict[str, float] = {}
        os.makedirs(os.path.join(self.work, "results"), exist_ok=True)
        os.makedirs(os.path.join(self.work, "logs"), exist_ok=True)

    def path(self, *parts: str) -> str:
        return os.path.join(self.work, *parts)

    def cached(self, name: str, fn: Callable[[], Any]) -> Any:
        out = self.path("results", f"{name}.json")
        if os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                return json.load(f)["result"]
        t0 = time.time()
        result = fn()
        self.timings[name] = time.time() - t0
        with open(out + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"result": result, "seconds": self.timings[name]}, f, indent=1)
        os.replace(out + ".tmp", out)
        return result

    def run(self, name: str, cmd: list[str]) -> None:
        """A child command, its output in WORK/logs/NAME.log; its last lines are shown when it fails."""
        say("$ " + " ".join(cmd))
        log = self.path("logs", f"{name}.log")
        with open(log, "w", encoding="utf-8") as f:
            rc = subprocess.run(cmd, cwd=REPO, env=self.env, stdout=f, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            with open(log, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"{name} failed (exit {rc}); last output:\n{tail}")

    # -- data ----------------------------------------------------------------------------------------------------

    def split(self) -> dict:
        def do() -> dict:
            st = split_corpus(self.args.corpus, self.path("raw", "train", "docs.jsonl"),
                              self.path("raw", "heldout", "docs.jsonl"), self.s.heldout_share, self.s.split_seed)
            return dataclasses.asdict(st)
        return self.cached("split", do)

    def build(self, name: str, side: str, flags: list[str]) -> dict:
        out = self.path("shards", name)

        def do() -> dict:
            shutil.rmtree(out, ignore_errors=True)
            self.run(f"build_{name}", [sys.executable, "-m", "pipelines.build", "--input",
                                       self.path("raw", side, "docs.jsonl"), "--output", out, "--progress", "false",
                                       "--max_seq_length", str(self.s.max_seq_length), "--dupe_factor",
                                       str(self.s.dupe_factor), "--num_shards", str(self.s.num_shards), *flags])
            from bench.data_value_mlm import shard_tokens
            with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
                m = json.load(f)
            return {"flags": flags, "counts": m["counts"], "counters": {
                k: v for k, v in m["counters"].items() if k.startswith(("clean:filtered", "dedup:", "instances:"))},
                **shard_tokens(out)}
        return self.cached(f"build_{name}", do)

    # -- models --------------------------------------------------------------------------------------------------

    def precision(self) -> str:
        if self.s.precision != "auto":
            return self.s.precision
        from trainer_hooks.pretrain import NATIVE_CPU_FLAGS, cpu_flags
        if shutil.which("nvidia-smi"):
            return "bf16"
        return "bf16" if (cpu_flags() or set()) & set(NATIVE_CPU_FLAGS["bf16"]) else "fp32"

    def pretrain(self, name: str, build: str, tokens_per_instance: float, tokens: int, config: str, seed: int,
                 steps: Optional[int] = None) -> dict:
        run_dir = self.path("runs", name)

        def do() -> dict:
            n = steps or max(1, round(tokens / (self.s.batch * tokens_per_instance)))
            self.run(f"pretrain_{name}", [
                sys.executable, "-m", "trainer_hooks.pretrain", "--input", self.path("shards", build, "tfrecords", "*"),
                "--manifest", self.path("shards", build, "manifest.json"), "--model", "albert", "--config", config,
                "--model_dir", run_dir, "--num_train_steps", str(n), "--train_batch_size", str(self.s.batch),
                "--optimizer", "adamw", "--learning_rate", str(self.s.learning_rate), "--num_warmup_steps",
                str(int(self.s.warmup * n)), "--precision", self.precision(), "--seed", str(seed),
                "--save_checkpoints_steps", str(10 ** 9), "--progress_every", "50"])
            return self.scored_run(name, build, n, seed)
        return self.cached(f"pretrain_{name}", do)

    def scored_run(self, name: str, build: str, steps: int, seed: int) -> dict:
        from bench.data_value_mlm import mlm_accuracy, replay_tokens
        run_dir = self.path("runs", name)
        with open(os.path.join(run_dir, "train_log.jsonl"), encoding="utf-8") as f:
            log = [json.loads(ln) for ln in f]
        return {"steps": steps, "examples": steps * self.s.batch,
                "tokens_read": replay_tokens(self.path("shards", build), steps, self.s.batch, seed),
                "train_seconds": sum(r["step_time_s"] for r in log), "final_train_loss": log[-1]["loss"],
                "mlm": mlm_accuracy(run_dir, "albert", self.path("shards", "eval")),
                "mlm_token_masked": mlm_accuracy(run_dir, "albert", self.path("shards", "eval_token"))}

    def distill(self, teacher: str, student_config: str, steps: int, seed: int) -> dict:
        run_dir = self.path("runs", "student_distilled")

        def do() -> dict:
            self.run("distill", [
                sys.executable, "-m", "trainer_hooks.distill", "--teacher", self.path("runs", teacher),
                "--student_config", student_config, "--input", self.path("shards", "default", "tfrecords", "*"),
                "--manifest", self.path("shards", "default", "manifest.json"), "--model_dir", run_dir,
                "--num_train_steps", str(steps), "--train_batch_size", str(self.s.batch), "--optimizer", "adamw",
                "--learning_rate", str(self.s.learning_rate), "--num_warmup_steps", str(int(self.s.warmup * steps)),
                "--precision", self.precision(), "--seed", str(seed), "--save_checkpoints_steps", str(10 ** 9),
                "--progress_every", "50"])
            return self.scored_run("student_distilled", "default", steps, seed)
        return self.cached("distill", do)

    def finetune(self, name: str, init: str, seed: int) -> dict:
        """One OCNLI run through ``bench/finetune_bench.py``'s ``finetune`` (same command and hyper-parameter
        names); the last epoch's dev accuracy is read from the run's metrics as well as the best epoch's."""
        s = self.s

        def do() -> dict:
            ns = argparse.Namespace(train=self.args.ocnli_train, dev=self.args.ocnli_dev, work=self.path("ft"),
                                    epochs=str(s.ft_epochs), lr=str(s.ft_lr), batch_size=str(s.ft_batch),
                                    max_seq_length=str(s.ft_seq), config=self.args.model_config)
            say(f"fine-tune {name} seed {seed} (init {init})")
            row = finetune_bench.finetune(ns, init, name, seed, False)
            out = self.path("ft", f"ft_{name}_seed{seed}")
            with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
                m = json.load(f)
            shutil.rmtree(os.path.join(out, "ckpt"), ignore_errors=True)  # resume state, no longer needed
            return {"last_epoch_accuracy": m["epochs"][-1]["dev"]["accuracy"],
                    "best_epoch_accuracy": row["dev_accuracy"], "best_epoch": row["best_epoch"],
                    "epochs": [e["dev"]["accuracy"] for e in m["epochs"]]}
        return self.cached(f"ft_{name}_seed{seed}", do)


def say(msg: str) -> None:
    print(f"[data_value] {msg}", file=sys.stderr, flush=True)


def distill_available() -> bool:
    return os.path.exists(os.path.join(REPO, "trainer_hooks", "distill.py"))


def run_all(b: Bench) -> dict:
    s = b.s
    out: dict[str, Any] = {"split": b.split()}
    builds = {"eval": b.build("eval", "heldout", []),
              "eval_token": b.build("eval_token", "heldout", CONFIGS["default_token"])}
    for c in s.configs:
        builds[c] = b.build(c, "train", CONFIGS[c])
    out["builds"] = builds
    models: dict[str, list] = {}
    for c in s.configs:
        models[c] = [b.pretrain(f"{c}_s{seed}", c, builds[c]["tokens_per_instance"], s.pretrain_tokens,
                                b.args.model_config, seed) for seed in s.pretrain_seeds]
    teacher = f"default_s{s.pretrain_seeds[0]}"
    inits = {c: [b.path("runs", f"{c}_s{seed}") for seed in s.pretrain_seeds] for c in s.configs}
    if distill_available() and not b.args.no_distill:
        from bench.data_value_mlm import forward_flops, load_config
        student_config = b.path("student_config.json")
        with open(student_config, "w", encoding="utf-8") as f:
            json.dump({**STUDENT, "vocab_size": load_config(b.args.model_config).vocab_size}, f, indent=2)
        steps = max(1, round(s.distill_tokens / (s.batch * builds["default"]["tokens_per_instance"])))
        fs = forward_flops(load_config(student_config), s.max_seq_length, 20)
        ft = forward_flops(load_config(b.args.model_config), s.max_seq_length, 20)
        ratio = (3 * fs + ft) / (3 * fs)  # one distillation step = teacher forward + student forward/backward
        models["student_distilled"] = [b.distill(teacher, student_config, steps, s.pretrain_seeds[0])]
        models["student_scratch"] = [b.pretrain("student_scratch", "default", 0, 0, student_config,
                                                s.pretrain_seeds[0], steps=round(steps * ratio))]
        out["distill"] = {"teacher": teacher, "student_config": STUDENT, "distill_steps": steps,
                          "scratch_steps": round(steps * ratio), "flops_ratio": ratio,
                          "teacher_forward_gflops": ft / 1e9, "student_forward_gflops": fs / 1e9}
        inits["student_distilled"] = [b.path("runs", "student_distilled")]
        inits["student_scratch"] = [b.path("runs", "student_scratch")]
    else:
        out["distill"] = None
        say("distillation skipped: " + ("--no_distill" if b.args.no_distill else "trainer_hooks/distill.py missing"))
    out["pretrain"] = models
    ft: dict[str, list] = {}
    if not b.args.no_random:
        ft["random"] = [b.finetune("random", "none", seed) for seed in s.ft_seeds]
    for name, dirs in inits.items():
        ft[name] = [b.finetune(f"{name}_{i}", d, seed) for i, d in enumerate(dirs) for seed in s.ft_seeds]
    out["ocnli"] = ft
    out["majority"] = majority_share(b.args.ocnli_dev)
    out["comparisons"] = compare(out, s.configs)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    p.add_argument("--corpus", default=os.path.join(REPO, "..", "shared", "corpus"),
                   help="raw text directory (read recursively, README* skipped)")
    p.add_argument("--ocnli", default=os.path.join(REPO, "..", "shared", "eval", "ocnli"),
                   help="directory with train.3k.json and dev.json")
    p.add_argument("--work", default=None, help="working directory (default /tmp/data_value_SETTING)")
    p.add_argument("--json", default=None, help="write every figure here (default WORK/data_value.json)")
    p.add_argument("--model_config", default=os.path.join(REPO, "trainer_hooks", "configs",
                                                           "albert_config_tiny.json"))
    p.add_argument("--no_distill", action="store_true", help="skip the distillation comparison")
    p.add_argument("--no_random", action="store_true", help="skip the random-init fine-tuning baseline")
    args = p.parse_args(argv)
    setting = SETTINGS[args.setting]
    args.work = os.path.abspath(args.work or f"/tmp/data_value_{args.setting}")
    args.corpus = os.path.abspath(args.corpus)
    args.ocnli_train = os.path.join(args.ocnli, "train.3k.json")
    args.ocnli_dev = os.path.join(args.ocnli, "dev.json")
    for path in (args.corpus, args.ocnli_train, args.ocnli_dev, args.model_config):
        if not os.path.exists(path):
            print(f"data_value: {path} does not exist", file=sys.stderr)
            return 2
    marker = os.path.join(args.work, "setting.json")
    wanted = {"setting": args.setting, **dataclasses.asdict(setting), "corpus": args.corpus,
              "model_config": args.model_config}
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            if json.load(f) != json.loads(json.dumps(wanted)):
                print(f"data_value: {args.work} holds a run with other settings; remove it or pass another --work",
                      file=sys.stderr)
                return 2
    elif os.path.isdir(args.work) and os.listdir(args.work):
        print(f"data_value: {args.work} is not empty and holds no data_value run", file=sys.stderr)
        return 2
    os.makedirs(args.work, exist_ok=True)
    with open(marker, "w", encoding="utf-8") as f:
        json.dump(wanted, f, indent=1)
    b = Bench(args, setting)
    t0 = time.time()
    try:
        out = run_all(b)
    except (SplitError, RuntimeError, subprocess.CalledProcessError) as e:
        print(f"data_value: {e}", file=sys.stderr)
        return 1
    out.update({"setting": wanted, "wall_seconds_this_invocation": time.time() - t0,
                "step_seconds": step_seconds(args.work), "precision": b.precision()})
    path = args.json or os.path.join(args.work, "data_value.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    print_table(out)
    print(f"\nfigures: {path}")
    return 0


def step_seconds(work: str) -> dict[str, float]:
    """Wall seconds of every cached step (from its first, uninterrupted run)."""
    res = {}
    for name in sorted(os.listdir(os.path.join(work, "results"))):
        if name.endswith(".json"):
            with open(os.path.join(work, "results", name), encoding="utf-8") as f:
                res[name[:-5]] = json.load(f)["seconds"]
    res["total"] = sum(res.values())
    return res


if __name__ == "__main__":
    sys.exit(main())
