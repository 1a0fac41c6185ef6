"""Issue 17, ``trainer_hooks.finetune`` as a stranger meets it: the precision options run (bf16, fp16 with loss
scaling) and print the pretraining trainer's own precision line; a misspelled option, an out-of-range value, a
missing file, a bad --output, weights of another shape, a vocab of another size and a resume with changed options
are each refused with one line, exit status 2, and nothing written."""

from __future__ import annotations

import json
import math

import pytest

tf = pytest.importorskip("tensorflow")

from tests.test_finetune import run, tiny_config, topic_file  # noqa: E402
from trainer_hooks import finetune, pretrain  # noqa: E402


def refusal_lines(err: str) -> list[str]:
    """stderr lines that are not TensorFlow's own chatter."""
    return [ln for ln in err.splitlines() if ln.startswith(("[finetune]", "python -m trainer_hooks.finetune"))]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    return {"dir": tmp, "cfg": tiny_config(tmp), "train": topic_file(tmp / "train.tsv", 32, 0),
            "dev": topic_file(tmp / "dev.tsv", 16, 1)}


def base(data, out, *extra) -> list:
    return ["--task", "classify", "--train", data["train"], "--dev", data["dev"], "--model", "albert", "--init",
            "none", "--config", data["cfg"], "--output", out, "--num_epochs", 2, "--batch_size", 8,
            "--max_seq_length", 24, "--learning_rate", 2e-3, "--deterministic", *extra]


def test_precisions_run_with_finite_metrics_and_the_pretrain_precision_line(data, capfd):
    results = {}
    for precision in ("fp32", "bf16", "fp16"):
        out = data["dir"] / f"prec_{precision}"
        assert run(*base(data, out, "--precision", precision)) == 0
        err = capfd.readouterr().err
        lines = [ln for ln in err.splitlines() if "--precision" in ln]
        expected = pretrain.precision_warning(precision, bool(tf.config.list_physical_devices("GPU")),
                                              pretrain.cpu_flags())
        assert lines == ([f"[finetune] {expected}"] if expected else []), precision
        m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        assert m["steps"] == 8 and len(m["epochs"]) == 2
        for e in m["epochs"]:
            assert math.isfinite(e["train_loss"]) and math.isfinite(e["dev"]["loss"]), (precision, e)
            assert 0.0 <= e["dev"]["accuracy"] <= 1.0
        assert math.isfinite(m["dev"]["loss"]) and m["skipped_steps"] < m["steps"]
        results[precision] = m
        reader = tf.train.load_checkpoint(str(out / "ckpt" / "ckpt-2"))
        scale = float(reader.get_tensor("loss_scale/scale/.ATTRIBUTES/VARIABLE_VALUE"))
        if precision == "fp16":
            # Dynamic loss scaling: 2^15 halved once per skipped (non-finite) step; 8 steps never reach the
            # growth interval, so nothing doubled it.
            assert scale == 2.0 ** 15 / 2.0 ** m["skipped_steps"]
        else:
            assert scale == 1.0 and m["skipped_steps"] == 0
    # The 16-bit runs really computed in 16 bits (their losses differ from fp32's) and stayed close to fp32.
    ref = results["fp32"]["epochs"][0]["train_loss"]
    for precision in ("bf16", "fp16"):
        got = results[precision]["epochs"][0]["train_loss"]
        assert got != ref and abs(got - ref) < 0.05, (precision, got, ref)
    # A loss scale far too large overflows fp16 gradients: those steps are skipped (no update) and each halves
    # the scale, as in pretraining; the metrics stay finite.
    out = data["dir"] / "prec_fp16_overflow"
    assert run(*base(data, out, "--precision", "fp16", "--initial_loss_scale", 2.0 ** 60)) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    scale = float(tf.train.load_checkpoint(str(out / "ckpt" / "ckpt-2")).get_tensor(
        "loss_scale/scale/.ATTRIBUTES/VARIABLE_VALUE"))
    assert m["skipped_steps"] >= 1 and scale == 2.0 ** (60 - m["skipped_steps"])
    assert all(math.isfinite(e["dev"]["loss"]) for e in m["epochs"])


def test_help_names_predict_and_wrong_options_are_one_line(data, capsys):
    with pytest.raises(SystemExit) as done:
        finetune.main(["--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "python -m trainer_hooks.finetune predict --model_dir DIR --input FILE" in out
    cases = [
        (["--tsk", "classify", "--train", "x"], "unknown option(s): --tsk (did you mean --task?)"),
        (base(data, data["dir"] / "o", "--learnng_rate=1"),
         "unknown option(s): --learnng_rate (did you mean --learning_rate?)"),
        (base(data, data["dir"] / "o", "--classifier_dropout", 1.0, "--warmup_proportion", 2),
         "--warmup_proportion must be in [0, 1]; --classifier_dropout must be in [0, 1)"),
        (base(data, data["dir"] / "o", "--max_seq_length", 2), "--max_seq_length must be >= 3"),
        (base(data, data["dir"] / "o", "--precision", "fp8"), "argument --precision: invalid choice: 'fp8'"),
        (base(data, data["dir"] / "o", "--initial_loss_scale", 0.5), "--initial_loss_scale must be >= 1"),
        (["predict", "--model_dir", "x", "--input", "y", "--batch_size", "0"], "--batch_size must be >= 1"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as done:
            finetune.main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert done.value.code == 2, argv
        assert err.count("\n") == 1 and message in err and err.endswith("(--help lists every option)\n"), err
    assert not (data["dir"] / "o").exists()


def test_missing_files_and_bad_outputs_refused_with_one_line(data, tmp_path, capfd):
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    run_dir = tmp_path / "pretrain_run"
    run_dir.mkdir()
    (run_dir / "run_args.json").write_text("{}", encoding="utf-8")
    cases = [
        (["--train", tmp_path / "nope.tsv"], f"--train {tmp_path / 'nope.tsv'}: no such file"),
        (["--test", tmp_path / "nope.tsv"], f"--test {tmp_path / 'nope.tsv'}: no such file"),
        (["--config", tmp_path / "nope.json"], f"--config {tmp_path / 'nope.json'}: no such file"),
        (["--vocab_file", tmp_path / "nope.txt"], f"--vocab_file {tmp_path / 'nope.txt'}: no such file"),
        (["--output", tmp_path / "a_file"], f"--output {tmp_path / 'a_file'} exists and is not a directory"),
        (["--output", run_dir], f"--output {run_dir} holds run_args.json (a pretraining run or export)"),
        (["--output", tmp_path / "a_file" / "sub"], "cannot create it"),
    ]
    for extra, message in cases:
        assert run(*base(data, tmp_path / "out"), *extra) == 2, extra
        lines = refusal_lines(capfd.readouterr().err)
        assert len(lines) == 1 and lines[0].startswith("[finetune] refused: ") and message in lines[0], lines
    assert run("predict", "--model_dir", tmp_path, "--input", tmp_path / "nope.txt") == 2
    assert refusal_lines(capfd.readouterr().err) == [f"[finetune] refused: --input {tmp_path / 'nope.txt'}: no such "
                                                     "file"]
    assert not (tmp_path / "out").exists() and sorted(p.name for p in run_dir.iterdir()) == ["run_args.json"]


def test_weights_of_another_shape_and_a_vocab_of_another_size_are_refused(data, tmp_path, capfd):
    from trainer_hooks.config import ModelConfig
    from trainer_hooks.export import export_model
    from trainer_hooks.models import build_model
    src = build_model("albert", ModelConfig.from_json_file(data["cfg"]), seed=7)
    run_dir = tmp_path / "run"
    tf.train.CheckpointManager(tf.train.Checkpoint(model=src), str(run_dir), 1).save(checkpoint_number=3)
    ModelConfig.from_json_file(data["cfg"]).to_json_file(run_dir / "model_config.json")
    (run_dir / "run_args.json").write_text(json.dumps({"model": "albert"}), encoding="utf-8")
    export_model(src, "albert", str(tmp_path / "export"))
    wider = tiny_config(tmp_path, intermediate_size=48)

    def argv(init, *extra) -> list:
        """``base`` with ``--init init`` and no ``--config`` (unless ``extra`` brings one)."""
        a = base(data, tmp_path / "out")
        a[a.index("--init") + 1] = init
        del a[a.index("--config"):a.index("--config") + 2]
        return a + list(extra)

    def refused(init, *extra) -> str:
        assert run(*argv(init, *extra)) == 2
        lines = refusal_lines(capfd.readouterr().err)
        assert len(lines) == 3 and lines[-1].startswith("[finetune] refused: "), lines  # after train/dev counts
        return lines[-1]

    # TensorFlow alone would say "...with shape (32, 48) and name albert_pretraining/kernel:0".
    assert refused(run_dir, "--config", wider).endswith(
        f"--init {run_dir / 'ckpt-3'} does not fit this albert config: model/encoder/ffn_blocks_0/intermediate/"
        "_kernel has shape [32, 64] in the checkpoint but [32, 48] in the config (and 2 more)")
    assert refused(tmp_path / "export", "--config", wider).endswith(
        f"--init {tmp_path / 'export' / 'pretraining.weights.h5'} does not fit this albert config: "
        "encoder/ffn_blocks/feed_forward_block/intermediate/vars/0 has shape [32, 64] in the weights file but "
        "[32, 48] in the config (and 2 more)")
    small_vocab = tiny_config(tmp_path, vocab_size=100)
    assert "model/encoder/word_embedding_layer/_embeddings has shape [21128, 16] in the checkpoint but [100, 16] " \
           "in the config (and 1 more)" in \
        refused(run_dir, "--config", small_vocab, "--vocab_file", make_vocab(tmp_path, 100))
    # The checkpoint's own config with a vocab file of another size: refused before any weight is read.
    assert run(*argv(run_dir, "--vocab_file", make_vocab(tmp_path, 100))) == 2
    lines = refusal_lines(capfd.readouterr().err)
    assert lines == [f"[finetune] refused: vocab {tmp_path / 'vocab100.txt'} has 100 tokens but the model's "
                     "word_embeddings have 21128 rows"]
    assert not (tmp_path / "out").exists()


def make_vocab(tmp_path, n: int) -> str:
    path = tmp_path / f"vocab{n}.txt"
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path.write_text("\n".join(special + [f"t{i}" for i in range(n - len(special))]) + "\n", encoding="utf-8")
    return str(path)


def test_resume_with_changed_options_refused_and_harmless_changes_allowed(data, tmp_path, capfd):
    out = tmp_path / "out"
    assert run(*base(data, out, "--num_epochs", 1)) == 0
    capfd.readouterr()
    assert run(*base(data, out, "--num_epochs", 1, "--learning_rate", 3e-3)) == 2
    lines = refusal_lines(capfd.readouterr().err)
    assert lines[-1] == (f"[finetune] refused: --output {out} holds a run made with --learning_rate 0.002, not "
                         "0.003: rerun with the same options to resume it, or use a new --output")
    assert run(*base(data, out, "--num_epochs", 1, "--seed", 1, "--batch_size", 4)) == 2
    assert "(and 1 more differences)" in capfd.readouterr().err
    # Batch size of evaluation and checkpoints kept change no result: the finished run is simply re-exported.
    assert run(*base(data, out, "--num_epochs", 1, "--eval_batch_size", 5)) == 0
    assert "resumed from" in capfd.readouterr().err
