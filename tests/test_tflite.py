"""Issue 17 item 3: ``export --tflite --quantize none|float16|dynamic_int8`` for the encoder (checked on the run's
shard records) and for a fine-tuned classifier (checked on its dev set), and ``finetune predict`` on the .tflite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.test_finetune import run as finetune_run, tiny_config, topic_file  # noqa: E402
from trainer_hooks import export, tflite  # noqa: E402


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tfl")
    out = tmp / "ft"
    assert finetune_run("--task", "classify", "--train", topic_file(tmp / "train.tsv", 120, 0), "--dev",
                        topic_file(tmp / "dev.tsv", 40, 1), "--model", "albert", "--init", "none", "--config",
                        tiny_config(tmp), "--output", out, "--num_epochs", 5, "--batch_size", 16,
                        "--learning_rate", 3e-3, "--max_seq_length", 32, "--warmup_proportion", 0.05) == 0
    return out


@pytest.mark.parametrize("quantize", tflite.QUANTIZE)
def test_classifier_tflite_matches_tf_on_the_dev_set(classifier, quantize, tmp_path, capsys):
    out = tmp_path / "lite"
    assert export.main(["--model_dir", str(classifier), "--output", str(out), "--tflite", "--quantize",
                        quantize]) == 0
    report = json.loads((out / "tflite_check.json").read_text(encoding="utf-8"))
    assert report["checked_on"].endswith("dev.tsv") and report["examples"] == 40 and report["seq_length"] == 32
    assert report["dev_accuracy_tf"] == 1.0
    if quantize == "none":
        assert report["probabilities_max_abs_diff"] < 1e-5 and report["class_agreement"] == 1.0
    elif quantize == "float16":
        assert report["probabilities_max_abs_diff"] < 5e-2 and report["class_agreement"] == 1.0
    else:
        assert report["class_agreement"] >= 0.9
        assert report["dev_accuracy_change"] == pytest.approx(report["dev_accuracy_tflite"] - 1.0)
    sizes = {"none": 1.0, "float16": 0.55, "dynamic_int8": 0.3}
    # Nearly all of the file is the 21128 x 16 embedding table: float16 halves it, int8 quarters it.
    assert report["bytes"] < sizes[quantize] * 21128 * 16 * 4 + 400_000
    raw = tmp_path / "raw.txt"
    raw.write_text("足球比赛冠军球队\n银行利率基金投资\n", encoding="utf-8")
    pred = tmp_path / "pred.jsonl"
    from trainer_hooks import finetune
    assert finetune.main(["predict", "--model_dir", str(out), "--input", str(raw), "--output", str(pred)]) == 0
    assert [json.loads(ln)["label"] for ln in pred.read_text(encoding="utf-8").splitlines()] == ["体育", "财经"]


def test_encoder_tflite_checked_on_shard_records(tmp_path):
    from trainer_hooks.config import ModelConfig
    from trainer_hooks.models import build_model
    from trainer_hooks.synthetic import write_dataset
    manifest = write_dataset(str(tmp_path / "data"), num_shards=1, per_shard=6, vocab_size=40)
    cfg = ModelConfig.from_dict({"vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2,
                                 "num_attention_heads": 2, "intermediate_size": 32, "embedding_size": 8,
                                 "max_position_embeddings": 16, "hidden_dropout_prob": 0.0,
                                 "attention_probs_dropout_prob": 0.0})
    model = build_model("albert", cfg, seed=4)
    run = tmp_path / "run"
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(run), 1).save(checkpoint_number=1)
    cfg.to_json_file(run / "model_config.json")
    (run / "run_args.json").write_text(json.dumps({"model": "albert", "manifest": str(tmp_path / "data" /
                                                                                     "manifest.json"),
                                                   "max_seq_length": 16}), encoding="utf-8")
    out = tmp_path / "export"
    assert export.main(["--model_dir", str(run), "--output", str(out), "--tflite"]) == 0
    report = json.loads((out / "tflite_check.json").read_text(encoding="utf-8"))
    assert report["checked_on"].startswith("the first records of") and report["examples"] == 6
    assert report["sequence_output_max_abs_diff"] < 1e-4 and report["pooled_output_max_abs_diff"] < 1e-4
    # The shard records really are what was compared: the TFLite model reproduces TF on them.
    batch = tflite.shard_batch(str(tmp_path / "data" / "manifest.json"), 16)
    assert batch["input_ids"].shape == (6, 16) and manifest["tfrecords"]["max_seq_length"] == 16
    got = tflite.Runner(str(out / "model.tflite"))(**batch)
    ref = tflite.tf_outputs(str(out / "saved_model"), batch)
    assert np.abs(got["pooled_output"] - ref["pooled_output"]).max() < 1e-4
    assert set(got) == {"sequence_output", "pooled_output"}
