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
4. Distillation: the default-data model is the teacher of a smaller student (``python -m trainer_hooks.distill``),
   and the same student is pretrained from scratch for the same estimated FLOPs (teacher forward + student
   training per distillation step).
5. MLM accuracy of every run on every held-out instance; OCNLI dev accuracy after fine-tuning on train.3k
   (``bench/finetune_bench.py``'s ``finetune``), several seeds, plus random init.

Independent runs go ``--jobs`` at a time, each pinned to its own share of the CPUs (the child inherits the
pinning thread's affinity, and TensorFlow sizes its thread pools to it). A difference "exceeds the seed spread"
when the two sets of fine-tuning runs do not overlap (see ``bench/data_value_report.py``). OCNLI is CC BY-NC: it
is read from ``../shared/eval/ocnli`` and never copied.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import queue
import resource
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import finetune_bench  # noqa: E402
from bench.data_value_report import compare, majority_share, print_table  # noqa: E402
from bench.data_value_split import SplitError, split_corpus  # noqa: E402

# Build flags of each configuration, on top of the shared ones. "plain" switches off every cleaning and dedup
# step that has a flag; what it still does (normalisation, two filters, instance checks) is in the README.
CONFIGS = {
    "default": [],
    "plain": ["--t2s", "false", "--min_chars", "0", "--max_chars", str(10 ** 9), "--min_cjk_ratio", "0",
              "--max_repeated_line_ratio", "1", "--pii", "off", "--exact_dedup", "false", "--line_dedup", "false",
              "--near_dedup", "false", "--masking", "token", "--mask_decision", "per_token"],
    "default_token": ["--masking", "token", "--mask_decision", "per_token"],  # the masking alone
}
# The distilled student: ALBERT-tiny's width with half its layers (half the encoder FLOPs), layers not shared.
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
    learning_rate: float = 1e-3   # AdamW, linear warmup and decay: LAMB learns slowly on runs this short
    warmup: float = 0.1
    precision: str = "auto"       # bf16 on a GPU or a CPU that runs it natively, else fp32
    pretrain_seeds: tuple[int, ...] = (12345,)
    ft_seeds: tuple[int, ...] = (1, 2, 3)
    ft_epochs: int = 2
    ft_lr: float = 1e-4
    ft_batch: int = 32
    ft_seq: int = 64
    ft_students: bool = True      # fine-tune the two distillation students on OCNLI too
    heldout_share: float = 0.05
    max_seq_length: int = 128
    dupe_factor: int = 2
    num_shards: int = 4
    split_seed: int = 12345
    jobs: int = 2                 # runs at a time


SETTINGS = {
    # 2 CPUs: about 40 minutes when they are idle (README: the measured wall and CPU time). One OCNLI run costs
    # about 4 CPU-minutes, so the students are compared on held-out MLM only.
    "cpu": Setting(configs=("default", "plain"), pretrain_tokens=2_000_000, distill_tokens=1_000_000,
                   ft_students=False),
    # One GPU: several passes over the corpus, the masking ablation, three pretraining seeds, five fine-tuning seeds.
    "gpu": Setting(configs=("default", "plain", "default_token"), pretrain_tokens=40_000_000,
                   distill_tokens=20_000_000, batch=128, pretrain_seeds=(12345, 23456, 34567),
                   ft_seeds=(1, 2, 3, 4, 5), ft_epochs=5, dupe_factor=5, num_shards=8, jobs=1),
}


class Bench:
    """Runs the steps, keeping each result as JSON so that a rerun skips what is done."""

    def __init__(self, args: argparse.Namespace, setting: Setting) -> None:
        self.args, self.s, self.work = args, setting, args.work
        self.env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.jobs = max(1, min(setting.jobs, len(os.sched_getaffinity(0))))
        for d in ("results", "logs"):
            os.makedirs(self.path(d), exist_ok=True)

    def path(self, *parts: str) -> str:
        return os.path.join(self.work, *parts)

    def cached(self, name: str, fn: Callable[[], Any]) -> Any:
        out = self.path("results", f"{name}.json")
        if os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                return json.load(f)["result"]
        t0 = time.time()
        result = fn()
        with open(out + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"result": result, "seconds": time.time() - t0}, f, indent=1)
        os.replace(out + ".tmp", out)
        return result

    def parallel(self, tasks: list[Callable[[], Any]]) -> list[Any]:
        """Run ``tasks`` ``self.jobs`` at a time, each on its own share of the CPUs; results in order."""
        if self.jobs == 1 or len(tasks) < 2:
            return [t() for t in tasks]
        cores = sorted(os.sched_getaffinity(0))
        free: queue.Queue = queue.Queue()
        for i in range(self.jobs):
            free.put(set(cores[i::self.jobs]))

        def pinned(task: Callable[[], Any]) -> Any:
            share = free.get()
            try:
                os.sched_setaffinity(0, share)  # this thread only; the child process it starts inherits it
                return task()
            finally:
                os.sched_setaffinity(0, cores)
                free.put(share)

        with concurrent.futures.ThreadPoolExecutor(self.jobs) as ex:
            return list(ex.map(pinned, tasks))

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

    def precision(self) -> str:
        if self.s.precision != "auto":
            return self.s.precision
        from trainer_hooks.hardware import auto_precision
        return auto_precision()

    # -- data ----------------------------------------------------------------------------------------------------

    def split(self) -> dict:
        return self.cached("split", lambda: dataclasses.asdict(split_corpus(
            self.args.corpus, self.path("raw", "train", "docs.jsonl"), self.path("raw", "heldout", "docs.jsonl"),
            self.s.heldout_share, self.s.split_seed)))

    def build(self, name: str, side: str, flags: list[str], dupe_factor: int) -> dict:
        out = self.path("shards", name)

        def do() -> dict:
            shutil.rmtree(out, ignore_errors=True)
            self.run(f"build_{name}", [sys.executable, "-m", "pipelines.build", "--input",
                                       self.path("raw", side, "docs.jsonl"), "--output", out, "--progress", "false",
                                       "--max_seq_length", str(self.s.max_seq_length), "--dupe_factor",
                                       str(dupe_factor), "--num_shards", str(self.s.num_shards), *flags])
            with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
                m = json.load(f)
            return {"flags": flags, "counts": m["counts"], "counters": {
                k: v for k, v in m["counters"].items() if k.startswith(("clean:filtered", "dedup:", "instances:"))}}
        return self.cached(f"build_{name}", do)

    def tokens(self, name: str) -> dict:
        from bench.data_value_mlm import shard_tokens
        return self.cached(f"tokens_{name}", lambda: shard_tokens(self.path("shards", name)))

    # -- models --------------------------------------------------------------------------------------------------

    def train_cmd(self, module: str, build: str, run: str, steps: int, seed: int) -> list[str]:
        return [sys.executable, "-m", module, "--input", self.path("shards", build, "tfrecords", "*"),
                "--manifest", self.path("shards", build, "manifest.json"), "--model_dir", self.path("runs", run),
                "--num_train_steps", str(steps), "--train_batch_size", str(self.s.batch), "--optimizer", "adamw",
                "--learning_rate", str(self.s.learning_rate), "--num_warmup_steps", str(int(self.s.warmup * steps)),
                "--precision", self.precision(), "--seed", str(seed), "--save_checkpoints_steps", str(10 ** 9),
                "--progress_every", "50",
                # The trainer sizes its pool from os.cpu_count(), which ignores the pinning (see parallel).
                "--intra_op_threads", str(len(os.sched_getaffinity(0)))]

    def pretrain(self, run: str, build: str, config: str, steps: int, seed: int) -> dict:
        def do() -> dict:
            self.run(f"pretrain_{run}", self.train_cmd("trainer_hooks.pretrain", build, run, steps, seed)
                     + ["--model", "albert", "--config", config])
            return self.trained(run, build, steps, seed)
        return self.cached(f"train_{run}", do)

    def distill(self, run: str, teacher: str, student_config: str, steps: int, seed: int) -> dict:
        def do() -> dict:
            self.run(f"distill_{run}", self.train_cmd("trainer_hooks.distill", "default", run, steps, seed)
                     + ["--teacher", self.path("runs", teacher), "--student_config", student_config])
            return self.trained(run, "default", steps, seed)
        return self.cached(f"train_{run}", do)

    def trained(self, run: str, build: str, steps: int, seed: int) -> dict:
        with open(self.path("runs", run, "train_log.jsonl"), encoding="utf-8") as f:
            log = [json.loads(ln) for ln in f if ln.strip()]
        seconds = sum(r["step_time_s"] for r in log)
        return {"run": run, "build": build, "steps": steps, "examples": steps * self.s.batch, "seed": seed,
                "train_seconds": seconds, "examples_per_s": steps * self.s.batch / seconds,
                "final_train_loss": log[-1]["loss"]}

    def score(self, r: dict) -> dict:
        """Tokens the run read (replayed) and its MLM accuracy on both evaluation builds. In the main thread: the
        TensorFlow of this process must not be started by a pinned thread (its pools would keep the pinning)."""
        from bench.data_value_mlm import mlm_accuracy, replay_tokens
        run_dir = self.path("runs", r["run"])
        return self.cached(f"mlm_{r['run']}", lambda: {
            "tokens_read": replay_tokens(self.path("shards", r["build"]), r["steps"], self.s.batch, r["seed"]),
            "mlm": mlm_accuracy(run_dir, "albert", self.path("shards", "eval")),
            "mlm_token_masked": mlm_accuracy(run_dir, "albert", self.path("shards", "eval_token"))})

    def finetune(self, name: str, init: str, seed: int) -> dict:
        """One OCNLI run through ``bench/finetune_bench.py``'s ``finetune``; the last epoch's dev accuracy is read
        from the run's metrics as well as the best epoch's."""
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
                    "epochs": [e["dev"]["accuracy"] for e in m["epochs"]], "minutes": row["minutes"]}
        return self.cached(f"ft_{name}_seed{seed}", do)


def say(msg: str) -> None:
    print(f"[data_value] {msg}", file=sys.stderr, flush=True)


def steps_for(tokens: int, batch: int, tokens_per_instance: float) -> int:
    return max(1, round(tokens / (batch * tokens_per_instance)))


def run_all(b: Bench, phases: dict) -> dict:
    s, out = b.s, {}

    def phase(name: str, fn: Callable[[], Any]) -> Any:
        t0, c0 = time.time(), cpu_seconds()
        result = fn()
        phases[name] = {"wall": time.time() - t0, "cpu": cpu_seconds() - c0}
        return result

    out["split"] = phase("split", b.split)
    names = ["eval", "eval_token", *s.configs]
    # The evaluation builds mask each held-out document once (dupe_factor 1): scoring is the costly part.
    built = phase("build", lambda: b.parallel([
        lambda n=n: b.build(n, "heldout", CONFIGS["default_token"] if n == "eval_token" else [], 1)
        if n.startswith("eval") else b.build(n, "train", CONFIGS[n], s.dupe_factor) for n in names]))
    out["builds"] = builds = {n: {**b_, **b.tokens(n)} for n, b_ in zip(names, built)}
    runs = {c: [f"{c}_s{seed}" for seed in s.pretrain_seeds] for c in s.configs}
    tasks = [lambda c=c, seed=seed: b.pretrain(f"{c}_s{seed}", c, b.args.model_config, steps_for(
        s.pretrain_tokens, s.batch, builds[c]["tokens_per_instance"]), seed)
        for c in s.configs for seed in s.pretrain_seeds]
    trained = iter(phase("pretrain", lambda: b.parallel(tasks)))
    out["pretrain"] = {c: [next(trained) for _ in s.pretrain_seeds] for c in s.configs}
    if not b.args.no_distill:
        from bench.data_value_mlm import forward_flops, load_config
        student_config = b.path("student_config.json")
        with open(student_config, "w", encoding="utf-8") as f:
            json.dump({**STUDENT, "vocab_size": load_config(b.args.model_config).vocab_size}, f, indent=2)
        steps = steps_for(s.distill_tokens, s.batch, builds["default"]["tokens_per_instance"])
        fs = forward_flops(load_config(student_config), s.max_seq_length, 20)
        ft = forward_flops(load_config(b.args.model_config), s.max_seq_length, 20)
        ratio = (3 * fs + ft) / (3 * fs)  # a training step is ~3 forward passes; distillation adds the teacher's
        seed, teacher = s.pretrain_seeds[0], runs["default"][0]
        distilled, scratch = phase("distill", lambda: b.parallel([
            lambda: b.distill("student_distilled", teacher, student_config, steps, seed),
            lambda: b.pretrain("student_scratch", "default", student_config, round(steps * ratio), seed)]))
        out["pretrain"].update(student_distilled=[distilled], student_scratch=[scratch])
        runs.update(student_distilled=["student_distilled"], student_scratch=["student_scratch"])
        out["distill"] = {"teacher": teacher, "student_config": STUDENT, "distill_steps": steps,
                          "scratch_steps": round(steps * ratio), "flops_ratio": ratio,
                          "teacher_forward_gflops": ft / 1e9, "student_forward_gflops": fs / 1e9}
    else:
        out["distill"] = None

    def score_all() -> None:
        for rs in out["pretrain"].values():
            for r in rs:
                r.update(b.score(r))
    phase("mlm", score_all)
    inits = {c: [b.path("runs", r) for r in rs] for c, rs in runs.items()
             if s.ft_students or not c.startswith("student")}
    jobs = [] if b.args.no_random else [("random", "none", seed) for seed in s.ft_seeds]
    jobs += [(f"{c}_{i}", d, seed) for c, dirs in inits.items() for i, d in enumerate(dirs) for seed in s.ft_seeds]
    results = iter(phase("finetune", lambda: b.parallel([lambda j=j: b.finetune(*j) for j in jobs])))
    out["ocnli"] = {}
    for name, _, _ in jobs:
        out["ocnli"].setdefault(name.rsplit("_", 1)[0] if name != "random" else name, []).append(next(results))
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
    loads = LoadSampler()
    t0, phases = time.time(), {}
    try:
        out = run_all(b, phases)
    except (SplitError, RuntimeError, subprocess.CalledProcessError) as e:
        print(f"data_value: {e}", file=sys.stderr)
        return 1
    finally:
        loads.stop()
    out.update({"setting": wanted, "precision": b.precision(), "jobs": b.jobs, "cpus": os.cpu_count(),
                "this_invocation": {"wall": time.time() - t0, "cpu": cpu_seconds(), "phases": phases,
                                    "load_avg_1m": loads.summary()},
                "step_seconds": step_seconds(args.work)})
    path = args.json or os.path.join(args.work, "data_value.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    print_table(out)
    print(f"\nfigures: {path}")
    return 0


class LoadSampler:
    """The 1-minute load average every 30 s while the benchmark runs (the host is shared)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(30)

    def stop(self) -> None:
        self._stop.set()

    def summary(self) -> dict[str, float]:
        xs = self.samples or [os.getloadavg()[0]]
        return {"mean": sum(xs) / len(xs), "min": min(xs), "max": max(xs), "samples": len(xs)}


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def step_seconds(work: str) -> dict[str, float]:
    """Wall seconds of every cached step (measured when it ran; parallel steps overlap)."""
    res = {}
    for name in sorted(os.listdir(os.path.join(work, "results"))):
        if name.endswith(".json"):
            with open(os.path.join(work, "results", name), encoding="utf-8") as f:
                res[name[:-5]] = json.load(f)["seconds"]
    return res


if __name__ == "__main__":
    sys.exit(main())
