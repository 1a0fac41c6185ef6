"""Issue 17 item 1: ``python -m trainer_hooks.finetune`` end to end at tiny size: it learns a separable task,
keeps the best epoch, exports a probabilities signature, predicts raw lines, resumes after a kill exactly,
stops early, starts from a run directory or an export, and refuses bad input with a message."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from trainer_hooks import finetune  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = {"attention_probs_dropout_prob": 0.0, "embedding_size": 16, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
        "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64, "max_position_embeddings": 64,
        "num_attention_heads": 2, "num_hidden_layers": 2, "share_type": "all", "type_vocab_size": 2,
        "vocab_size": 21128, "max_relative_position": 8, "use_relative_position": True}
SPORT, MONEY = "足球篮球比赛冠军球队教练", "股票市场银行利率投资基金"


def tiny_config(tmp_path: Path, **over) -> str:
    path = tmp_path / ("tiny_config" + "".join(f"_{k}{v}" for k, v in sorted(over.items())) + ".json")
    path.write_text(json.dumps({**TINY, **over}), encoding="utf-8")
    return str(path)


def topic_file(path: Path, n: int, seed: int, extra: list[str] = ()) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        lab = rng.choice(["体育", "财经"])
        chars = SPORT if lab == "体育" else MONEY
        lines.append(f"{lab}\t" + "".join(rng.choice(chars) for _ in range(rng.randint(4, 12))))
    path.write_text("\n".join(lines + list(extra)) + "\n", encoding="utf-8")
    return str(path)


def pair_file(path: Path, n: int, seed: int) -> str:
    """LCQMC-style: label 1 when both sides are about the same topic."""
    rng = random.Random(seed)
    lines = ["text_a\ttext_b\tlabel"]
    for _ in range(n):
        ta, tb = rng.choice([SPORT, MONEY]), rng.choice([SPORT, MONEY])
        sa = "".join(rng.choice(ta) for _ in range(rng.randint(3, 8)))
        sb = "".join(rng.choice(tb) for _ in range(rng.randint(3, 8)))
        lines.append(f"{sa}\t{sb}\t{int(ta == tb)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def run(*argv: str) -> int:
    return finetune.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ft")
    cfg = tiny_config(tmp)
    train = topic_file(tmp / "train.tsv", 120, 0, extra=["体育\t<p></p>"])  # one row empty after cleaning
    dev = topic_file(tmp / "dev.tsv", 40, 1)
    out = tmp / "out"
    assert run("--task", "classify", "--train", train, "--dev", dev, "--test", dev, "--model", "albert",
               "--init", "none", "--config", cfg, "--output", out, "--num_epochs", 6, "--batch_size", 16,
               "--learning_rate", 3e-3, "--max_seq_length", 32, "--warmup_proportion", 0.05) == 0
    return tmp, out


def test_learns_keeps_best_and_writes_outputs(trained):
    tmp, out = trained
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert (out / "labels.txt").read_text(encoding="utf-8") == "体育\n财经\n" == \
        (out / "export" / "labels.txt").read_text(encoding="utf-8")
    assert metrics["counts"]["train"] == {"finetune:kept": 120, "finetune:skipped:empty_sentence": 1}
    assert metrics["counts"]["dev"] == {"finetune:kept": 40}
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4, 5, 6] and metrics["steps"] == 6 * 8
    dev_acc = [e["dev"]["accuracy"] for e in metrics["epochs"]]
    best = metrics["best_epoch"]
    assert dev_acc[best - 1] == max(dev_acc) and all(a < max(dev_acc) for a in dev_acc[:best - 1])
    assert max(dev_acc) == 1.0 and metrics["dev"]["accuracy"] == 1.0 and metrics["test"]["macro_f1"] == 1.0
    assert metrics["dev"]["loss"] == pytest.approx(metrics["epochs"][best - 1]["dev"]["loss"], rel=1e-5)


def test_export_signature_matches_the_classifier(trained):
    tmp, out = trained
    from trainer_hooks import finetune_data as fd
    ex = finetune.load_export(str(out))
    assert ex["meta"] == {"task": "classify", "model": "albert", "num_labels": 2, "max_seq_length": 32,
                          "do_lower_case": True, "t2s": True, "classifier_dropout": 0.1}
    rows = fd.read_rows(str(tmp / "dev.tsv"), "auto", "classify", fd.CounterDict())
    enc = fd.encode_rows(rows, ex["encoder"], ex["labels"], fd.CounterDict())
    serve = tf.saved_model.load(str(out / "export" / "saved_model")).signatures["serve"]
    probs = serve(input_ids=tf.constant(enc.input_ids), input_mask=tf.constant(enc.input_mask),
                  segment_ids=tf.constant(enc.segment_ids))["probabilities"].numpy()
    assert probs.shape == (40, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == enc.labels).all()
    # The same weights in a freshly built Keras classifier give the same probabilities.
    from trainer_hooks.config import ModelConfig
    from trainer_hooks.models import build_model
    enc_model = build_model("albert", ModelConfig.from_json_file(out / "export" / "albert_config.json"))
    clf = finetune.make_classifier(enc_model.encoder, 2, 0.1, 0, "float32")
    clf.load_weights(out / "export" / "classifier.weights.h5")
    ref = tf.nn.softmax(clf(enc.input_ids, enc.input_mask, enc.segment_ids)).numpy()
    assert np.abs(ref - probs).max() < 1e-5


def test_predict_raw_lines(trained, capsys):
    tmp, out = trained
    raw = tmp / "raw.txt"
    raw.write_text("足球比赛冠军\n\n銀行利率投資\n", encoding="utf-8")  # traditional: cleaned to simplified
    pred = tmp / "pred.jsonl"
    assert run("predict", "--model_dir", out, "--input", raw, "--output", pred) == 0
    recs = [json.loads(ln) for ln in pred.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in recs] == [1, 2, 3]
    assert recs[0]["label"] == "体育" and recs[2]["label"] == "财经"
    assert recs[1].get("empty_sentence") is True and "empty_sentence" not in recs[0]
    assert "predicted 3 lines: truncated 0, empty 1" in capsys.readouterr().err


def test_refusals(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    train = topic_file(tmp_path / "train.tsv", 10, 0)
    dev = topic_file(tmp_path / "dev.tsv", 4, 1, extra=["娱乐\t明星电影", "娱乐\t电视剧"])
    base = ["--task", "classify", "--train", train, "--model", "albert", "--init", "none", "--output",
            tmp_path / "o", "--max_seq_length", 32]
    assert run(*base, "--dev", dev, "--config", cfg) == 2
    err = capsys.readouterr().err
    assert "dev.tsv: labels not in the training set ['体育', '财经']: '娱乐' (2 rows, first at line 5)" in err
    assert run(*base, "--dev", train, "--config", tiny_config(tmp_path, vocab_size=100)) == 2
    assert "has 21128 tokens but the model's word_embeddings have 100 rows" in capsys.readouterr().err
    assert run(*base, "--dev", train, "--config", cfg, "--max_seq_length", 65) == 2  # the last one wins
    assert "exceeds the model's max_position_embeddings 64" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_init_from_run_dir_and_export_loads_the_encoder(tmp_path):
    """A pretraining run directory (latest ckpt) and an export both give the encoder their weights."""
    from trainer_hooks.config import ModelConfig
    from trainer_hooks.export import export_model
    from trainer_hooks.models import build_model
    cfg_path = tiny_config(tmp_path, embedding_size=None)  # NEZHA: embeddings are H wide
    src = build_model("nezha", ModelConfig.from_json_file(cfg_path), seed=7)
    run_dir = tmp_path / "run"
    tf.train.CheckpointManager(tf.train.Checkpoint(model=src), str(run_dir), 1).save(checkpoint_number=3)
    ModelConfig.from_json_file(cfg_path).to_json_file(run_dir / "model_config.json")
    (run_dir / "run_args.json").write_text(json.dumps({"model": "nezha"}), encoding="utf-8")
    export_model(src, "nezha", str(tmp_path / "export"))
    want = {v.path: v.numpy() for v in src.encoder.weights}
    for init in (run_dir, run_dir / "ckpt-3", tmp_path / "export"):
        spec = finetune.resolve_init(str(init), "nezha", None)
        got = finetune.load_encoder("nezha", spec, "float32", seed=99).encoder
        assert {v.path: v.numpy().tobytes() for v in got.weights} == {k: v.tobytes() for k, v in want.items()}
    with pytest.raises(finetune.InitError, match="is a nezha run, not --model albert"):
        finetune.resolve_init(str(run_dir), "albert", None)
    # And the CLI fine-tunes a sentence-pair task from the run directory (LCQMC TSV with a header line).
    out = tmp_path / "out"
    assert run("--task", "pair", "--train", pair_file(tmp_path / "t.tsv", 40, 0), "--dev",
               pair_file(tmp_path / "d.tsv", 12, 1), "--model", "nezha", "--init", run_dir, "--output", out,
               "--num_epochs", 1, "--batch_size", 8, "--max_seq_length", 24) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["counts"]["train"] == {"finetune:kept": 40, "finetune:skipped:header": 1}
    assert metrics["labels"] == ["0", "1"] and metrics["steps"] == 5


def test_resume_after_kill_equals_uninterrupted_and_early_stopping(tmp_path):
    cfg = tiny_config(tmp_path)
    train = topic_file(tmp_path / "train.tsv", 48, 0)
    dev = topic_file(tmp_path / "dev.tsv", 16, 1)

    def cmd(out, *extra):
        return [sys.executable, "-m", "trainer_hooks.finetune", "--task", "classify", "--train", train, "--dev",
                dev, "--model", "albert", "--init", "none", "--config", cfg, "--output", str(out), "--num_epochs",
                "3", "--batch_size", "16", "--learning_rate", "2e-3", "--max_seq_length", "24", "--deterministic",
                "--classifier_dropout", "0.3", *extra]

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run(cmd(tmp_path / "a", "--debug_kill_after_epoch", "1"), cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    resumed = subprocess.run(cmd(tmp_path / "a"), cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0 and "resumed from" in resumed.stderr and "after epoch 1" in resumed.stderr
    assert run(*cmd(tmp_path / "b")[3:]) == 0
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text(encoding="utf-8")) for d in "ab")
    drop = ("seconds",)
    assert [{k: v for k, v in e.items() if k not in drop} for e in a["epochs"]] == \
        [{k: v for k, v in e.items() if k not in drop} for e in b["epochs"]]
    assert a["dev"] == b["dev"]
    # Early stopping: with a zero learning rate the dev metric never improves after epoch 1.
    assert run(*cmd(tmp_path / "c")[3:], "--learning_rate", "0", "--num_epochs", "6",
               "--early_stopping_patience", "2") == 0
    c = json.loads((tmp_path / "c" / "metrics.json").read_text(encoding="utf-8"))
    assert c["stopped_early"] and [e["epoch"] for e in c["epochs"]] == [1, 2, 3] and c["best_epoch"] == 1


def test_two_horovod_ranks_split_each_epoch(tmp_path):
    """Under horovodrun each rank takes half of every epoch (60 of 120 examples: 8 steps of 8, not 15) and both
    ranks finish (every step all-reduces, so unequal step counts would hang)."""
    pytest.importorskip("horovod.tensorflow", exc_type=ImportError)
    from tests.test_trainer_horovod import horovodrun
    cfg = tiny_config(tmp_path)
    cmd = [horovodrun(), "-np", "2", "-H", "localhost:2", sys.executable, "-m", "trainer_hooks.finetune", "--task",
           "classify", "--train", topic_file(tmp_path / "train.tsv", 121, 0), "--dev",
           topic_file(tmp_path / "dev.tsv", 20, 1), "--model", "albert", "--init", "none", "--config", cfg,
           "--output", str(tmp_path / "out"), "--num_epochs", "2", "--batch_size", "8", "--max_seq_length", "24",
           "--horovod"]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "121 training examples, 2 labels, 8 steps/epoch, 16 steps" in proc.stdout + proc.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["steps"] == 16 and [e["epoch"] for e in metrics["epochs"]] == [1, 2]
