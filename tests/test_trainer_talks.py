"""Issue 14 item 8: the trainer talks (progress and checkpoint lines, one CPU precision warning, --help with
defaults), keeps TensorBoard and train_log.jsonl free of redone steps, and takes vocab_size from the manifest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

tf = pytest.importorskip("tensorflow")

from tests.test_trainer import REPO, cli_args, make_run_dir, read_log  # noqa: E402
from trainer_hooks import cli, convert_hf, export, pretrain  # noqa: E402

PROGRESS = re.compile(r"^\[trainer\] step (\d+)/(\d+) \| loss ([0-9.]+) \| mlm_acc ([0-9.]+) \| sop_acc ([0-9.]+) "
                      r"\| ([0-9.]+) examples/s \| elapsed \S+ \| eta (\S+)$")


def scalar_steps(logdir: str, tag: str) -> list[int]:
    """Every step at which ``tag`` was written, over all events files in ``logdir`` (duplicates kept)."""
    from tensorflow.core.util import event_pb2
    steps = []
    for path in sorted(tf.io.gfile.glob(os.path.join(logdir, "*tfevents*"))):
        for raw in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(raw.numpy())
            steps += [event.step for v in event.summary.value if v.tag == tag]
    return steps


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("talks"), "albert", num_shards=2, per_shard=8)


def test_progress_checkpoint_and_precision_lines(run, tmp_path, capfd):
    model_dir = str(tmp_path / "out")
    assert pretrain.main(cli_args(run, model_dir, 5, "--optimizer", "adamw", "--progress_every", "2",
                                  "--save_checkpoints_steps", "2", "--precision", "bf16")) == 0
    err = capfd.readouterr().err.splitlines()
    progress = [m for m in map(PROGRESS.match, err) if m]
    # Every --progress_every steps and at the last step; loss and accuracy are means over the steps since the last line.
    assert [(int(m[1]), int(m[2])) for m in progress] == [(2, 5), (4, 5), (5, 5)]
    log = read_log(model_dir)
    windows = [log[0:2], log[2:4], log[4:5]]
    for m, window in zip(progress, windows):
        assert float(m[3]) == pytest.approx(sum(r["loss"] for r in window) / len(window), abs=1e-4)
        assert float(m[4]) == pytest.approx(sum(r["mlm_accuracy"] for r in window) / len(window), abs=1e-4)
        assert float(m[6]) > 0
    assert progress[-1][7] == "0s"
    saved = [ln for ln in err if ln.startswith("[trainer] saved checkpoint")]
    assert saved == [f"[trainer] saved checkpoint {os.path.join(model_dir, f'ckpt-{s}')} (step {s})"
                     for s in (2, 4, 5)]
    warnings = [ln for ln in err if "--precision bf16" in ln]
    if tf.config.list_physical_devices("GPU"):
        assert warnings == []
    else:
        expected = pretrain.precision_warning("bf16", False, pretrain.cpu_flags())
        assert warnings == [f"[trainer] {expected}"]


def test_precision_warning_names_the_cpu_case():
    assert pretrain.precision_warning("fp32", False, set()) is None
    assert pretrain.precision_warning("bf16", True, set()) is None
    slow = pretrain.precision_warning("bf16", False, {"avx2", "fma"})
    assert slow.startswith("warning: --precision bf16 without a GPU is slow") and "no amx_bf16/avx512_bf16" in slow
    native = pretrain.precision_warning("fp16", False, {"avx2", "avx512_fp16"})
    assert "has avx512_fp16 and runs it natively" in native and "slower than fp32" in native
    assert pretrain.precision_warning("fp16", False, {"avx512_bf16"}).startswith(  # bf16 units do not run fp16
        "warning: --precision fp16 without a GPU is slow")
    unknown = pretrain.precision_warning("bf16", False, None)
    assert "slow unless this CPU has amx_bf16/avx512_bf16" in unknown


def test_auto_precision_picks_bf16_only_where_it_is_not_emulated():
    from trainer_hooks.hardware import auto_precision
    assert auto_precision(True, {"avx2"}) == "bf16"  # a GPU
    assert auto_precision(False, {"avx2", "fma"}) == "fp32"  # e.g. an AMD EPYC without AVX512_BF16: emulated
    assert auto_precision(False, {"avx2", "avx512_bf16"}) == "bf16"
    assert auto_precision(False, {"amx_bf16"}) == "bf16"
    assert auto_precision(False, {"avx512_fp16"}) == "fp32"  # fp16 units do not run bf16
    assert auto_precision(False, set()) == "fp32"


def test_fp32_prints_no_precision_warning(run, tmp_path, capfd):
    assert pretrain.main(cli_args(run, str(tmp_path / "out"), 1, "--optimizer", "adamw")) == 0
    err = capfd.readouterr().err
    assert "--precision" not in err and "warning" not in err
    assert len([ln for ln in err.splitlines() if PROGRESS.match(ln)]) == 1  # the last step always reports


def test_purge_events_drops_later_steps_and_a_torn_tail(tmp_path):
    logdir = str(tmp_path / "train")
    for first, last in ((1, 4), (5, 7)):  # two writers, as a run and its resume leave them
        writer = tf.summary.create_file_writer(logdir, filename_suffix=f".{first}")
        with writer.as_default():
            for step in range(first, last + 1):
                pretrain._scalar_summary("loss", float(step), step)
        writer.close()
    files = sorted(tf.io.gfile.glob(os.path.join(logdir, "*tfevents*")))
    assert len(files) == 2
    with open(files[0], "ab") as f:
        f.write(b"\x20\x00\x00\x00\x00\x00\x00\x00garbage")  # a record cut off by a kill
    assert pretrain.purge_events(logdir, 3) == 1 + 3  # step 4 of the first file, 5-7 of the second
    assert scalar_steps(logdir, "loss") == [1, 2, 3]
    assert sorted(tf.io.gfile.glob(os.path.join(logdir, "*tfevents*"))) == files[:1]  # the emptied file is gone
    assert not [f for f in os.listdir(logdir) if "tfevents" not in f]  # no temp file left behind
    assert pretrain.purge_events(logdir, 3) == 0
    assert pretrain.purge_events(str(tmp_path / "missing"), 0) == 0


def test_kill_resume_records_every_step_once(run, tmp_path):
    """A run killed after step 5 (checkpoint at 4) and resumed: TensorBoard and train_log.jsonl hold steps
    1-6 once each. Also no TF noise on stderr: no import-time INFO lines, no use_unbounded_threadpool error."""
    model_dir = str(tmp_path / "out")
    common = ("--optimizer", "adamw", "--deterministic", "--save_checkpoints_steps", "2", "--progress_every", "1")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    killed = subprocess.run([sys.executable, "-m", "trainer_hooks.pretrain",
                             *cli_args(run, model_dir, 6, *common, "--debug_kill_at_step", "5")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    lines = killed.stderr.splitlines()
    assert [int(m[1]) for m in map(PROGRESS.match, lines) if m] == [1, 2, 3, 4, 5]
    noise = [ln for ln in lines if not ln.startswith("[trainer] ")]
    assert noise == [], noise[:5]
    assert scalar_steps(os.path.join(model_dir, "train"), "loss").count(5) == 1  # flushed before the kill
    with open(os.path.join(model_dir, "train_log.jsonl"), "a") as f:
        f.write('{"step": 6, "lo')  # a line torn by the kill
    assert pretrain.main(cli_args(run, model_dir, 6, *common)) == 0
    for tag in ("loss", "mlm_accuracy", "learning_rate"):
        steps = scalar_steps(os.path.join(model_dir, "train"), tag)
        assert Counter(steps) == Counter(range(1, 7)), (tag, sorted(steps))
    assert [r["step"] for r in read_log(model_dir)] == list(range(1, 7))


def test_help_shows_every_default(capsys):
    for parser in (pretrain.build_parser(), export.build_parser(), convert_hf.build_parser()):
        assert cli.undocumented_defaults(parser) == [], parser.prog
    with pytest.raises(SystemExit) as done:
        pretrain.parse_args(["--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # independent of the terminal width's line wrapping
    for expected in ("--progress_every PROGRESS_EVERY progress line", "ETA) (default: 100)", "(default: lamb)",
                     "--num_warmup_steps NUM_WARMUP_STEPS linear LR warmup from 0 (default: 0)"):
        assert expected in out, expected
    assert "--debug_" not in out


def test_vocab_size_from_manifest_and_export_vocab_from_manifest(tmp_path, capfd):
    run = make_run_dir(tmp_path, "albert", num_shards=2, per_shard=8, vocab_size=48)
    with open(run["config"]) as f:
        cfg = json.load(f)
    del cfg["vocab_size"]
    with open(run["config"], "w") as f:
        json.dump(cfg, f)
    model_dir = str(tmp_path / "out")
    assert pretrain.main(cli_args(run, model_dir, 1, "--optimizer", "adamw")) == 0  # no --vocab_file
    assert "sets no vocab_size: using the manifest's 48" in capfd.readouterr().err
    with open(os.path.join(model_dir, "model_config.json")) as f:
        assert json.load(f)["vocab_size"] == 48
    out = str(tmp_path / "export")
    assert export.main(["--model_dir", model_dir, "--output", out]) == 0
    with open(os.path.join(out, "vocab.txt"), "rb") as a, open(run["vocab"], "rb") as b:
        assert a.read() == b.read()
    # A manifest whose vocab no longer matches its sha256 is not trusted: no vocab.txt, and a note saying so.
    with open(run["vocab"], "a") as f:
        f.write("extra\n")
    out2 = str(tmp_path / "export2")
    assert export.main(["--model_dir", model_dir, "--output", out2]) == 0
    assert not os.path.exists(os.path.join(out2, "vocab.txt"))
    assert "no vocab file known" in capfd.readouterr().err
