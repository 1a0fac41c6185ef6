"""Issues 3 + 7 end to end: the trainer reads real pipeline shards and overfits them."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from tests.pipeline_util import ROOT, SAMPLE, build  # noqa: E402
from trainer_hooks import pretrain  # noqa: E402
from trainer_hooks.synthetic import tiny_config  # noqa: E402

VOCAB = ROOT / "data" / "vocab" / "sample_vocab.txt"


@pytest.mark.parametrize("kind", ["albert", "nezha"])
def test_tiny_models_overfit_real_pipeline_instances(kind, tmp_path):
    # A handful of real instances: the first 1,200 characters of one wiki article.
    first = json.loads((SAMPLE / "zhwiki_sample.jsonl").read_text(encoding="utf-8").splitlines()[0])
    first["text"] = first["text"][:1200]
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps(first, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "data"
    m = build(out, "--vocab_file", str(VOCAB), "--max_seq_length", "64", "--max_predictions_per_seq", "10",
              "--dupe_factor", "1", "--num_shards", "2", "--num_doc_shards", "1",
              inputs=["--input", str(src)])
    n = m["tfrecords"]["num_instances"]
    assert 8 <= n <= 64
    cfg = tiny_config(kind, vocab_size=4000, max_position_embeddings=64, hidden_size=64,
                      intermediate_size=128,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    model_dir = tmp_path / "model"
    args = ["--input", str(out / "tfrecords" / "*"), "--manifest", str(out / "manifest.json"),
            "--model", kind, "--config", str(tmp_path / "cfg.json"), "--model_dir", str(model_dir),
            "--num_train_steps", "200", "--train_batch_size", "8", "--learning_rate", "5e-2",
            "--optimizer", "lamb", "--num_warmup_steps", "5", "--weight_decay", "0",
            "--save_checkpoints_steps", "1000", "--vocab_file", str(VOCAB)]
    assert pretrain.main(args) == 0
    log = [json.loads(line) for line in (model_dir / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 200
    first_loss = np.mean([r["loss"] for r in log[:3]])
    last_loss = np.mean([r["loss"] for r in log[-5:]])
    assert last_loss < first_loss / 3, (first_loss, last_loss)
