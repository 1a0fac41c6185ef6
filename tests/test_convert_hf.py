"""trainer_hooks.convert_hf: trainer checkpoints -> transformers (PyTorch) directories, loaded offline, same outputs."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Nothing here may reach the Hugging Face hub; transformers' TF model code is not needed either.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("USE_FLAX", "0")

tf = pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.test_trainer import cli_args, make_run_dir  # noqa: E402
from trainer_hooks import convert_hf, pretrain  # noqa: E402
from trainer_hooks.config import ModelConfig  # noqa: E402
from trainer_hooks.models import build_model  # noqa: E402
from trainer_hooks.models.albert import albert_parameter_count  # noqa: E402
from trainer_hooks.synthetic import tiny_config  # noqa: E402

ATOL = 1e-4  # trained checkpoint (small init weights)
# Random-weight models: observed differences are ~1e-6, while mapping our tanh-GELU to transformers' erf "gelu"
# (the easy mistake) gives ~3e-4, so this bound also proves the activation mapping.
EXACT = 2e-5
HAS_NEZHA = hasattr(transformers, "NezhaForPreTraining")


def fixed_batch(vocab_size: int, length: int = 16) -> dict[str, np.ndarray]:
    """Two rows: one full, one with 6 padding positions; both segments; 3 MLM positions per row."""
    rng = np.random.default_rng(42)
    ids = rng.integers(5, vocab_size, (2, length))
    ids[:, 0], ids[:, 7], ids[0, -1], ids[1, 9] = 2, 3, 3, 3  # [CLS] ... [SEP] ... [SEP]
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    ids[1, 10:] = 0
    segments = np.zeros_like(ids)
    segments[:, 8:] = 1
    segments[1, 10:] = 0
    return {"input_ids": ids, "input_mask": mask, "segment_ids": segments,
            "masked_lm_positions": np.array([[1, 4, 12], [2, 5, 8]])}


def run_both(model, hf_model, kind: str, batch: dict[str, np.ndarray]) -> dict[str, float]:
    """Max abs differences of our TF model and the transformers model (eval mode, no dropout) on ``batch``."""
    ours = model({k: tf.constant(v) for k, v in batch.items()}, training=False)
    t = {"input_ids": torch.from_numpy(batch["input_ids"]), "attention_mask": torch.from_numpy(batch["input_mask"]),
         "token_type_ids": torch.from_numpy(batch["segment_ids"])}
    hf_model.eval()
    with torch.no_grad():
        out = hf_model(**t, output_hidden_states=True)
        pooled = hf_model.base_model(**t).pooler_output
    rows = np.arange(2)[:, None]
    mlm = out.prediction_logits.numpy()[rows, batch["masked_lm_positions"]]
    sentence = out.sop_logits if kind == "albert" else out.seq_relationship_logits
    return {"sequence_output": np.abs(ours["sequence_output"].numpy() - out.hidden_states[-1].numpy()).max(),
            "pooled_output": np.abs(ours["pooled_output"].numpy() - pooled.numpy()).max(),
            "mlm_logits": np.abs(ours["mlm_logits"].numpy() - mlm).max(),
            "sentence_logits": np.abs(ours["sentence_logits"].numpy() - sentence.numpy()).max()}


def randomised(model, seed: int = 0):
    """Replace every weight (biases, LayerNorms and the MLM bias included) by random values, so a wrongly mapped
    or transposed tensor cannot hide behind zero or one initialisation."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        value = rng.normal(0.0, 0.1, v.shape) + (1.0 if v.path.endswith("gamma") else 0.0)
        v.assign(value.astype(np.float32))
    return model


def hf_parameter_count(hf_model) -> int:
    return sum(p.numel() for p in hf_model.parameters())  # tied parameters are listed once


KINDS = ["albert", pytest.param("nezha", marks=pytest.mark.skipif(
    not HAS_NEZHA, reason="installed transformers has no NEZHA; convert_hf refuses it"))]


@pytest.mark.parametrize("kind", KINDS)
def test_cli_converts_a_real_checkpoint_that_loads_offline_with_equal_outputs(kind, tmp_path):
    run = make_run_dir(tmp_path, kind, num_shards=1, per_shard=8)
    model_dir = str(tmp_path / "run")
    assert pretrain.main(cli_args(run, model_dir, 2, "--vocab_file", run["vocab"], "--save_checkpoints_steps",
                                  "2")) == 0
    out = str(tmp_path / "hf")
    # The CLI reloads the directory and checks it against the TF model itself (exit 1 on a mismatch).
    assert convert_hf.main(["--model_dir", model_dir, "--output", out]) == 0
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"} <= set(os.listdir(out))

    cls = transformers.AlbertForPreTraining if kind == "albert" else transformers.NezhaForPreTraining
    hf_model, info = cls.from_pretrained(out, local_files_only=True, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights: nothing left random
    assert hf_model.config.hidden_act == "gelu_new"  # our "gelu" is the tanh approximation

    cfg = ModelConfig.from_json_file(os.path.join(model_dir, "model_config.json"))
    model = build_model(kind, cfg, max_predictions_per_seq=4)
    batch = fixed_batch(cfg.vocab_size)
    untrained = model({k: tf.constant(v) for k, v in batch.items()})["sequence_output"].numpy()
    tf.train.Checkpoint(model=model).restore(os.path.join(model_dir, "ckpt-2")).expect_partial() \
        .assert_existing_objects_matched()
    diffs = run_both(model, hf_model, kind, batch)
    assert max(diffs.values()) < ATOL, diffs
    # The two training steps moved the weights well beyond ATOL, so the match above proves the checkpoint was read.
    trained = model({k: tf.constant(v) for k, v in batch.items()})["sequence_output"].numpy()
    assert np.abs(trained - untrained).max() > 100 * ATOL
    assert hf_parameter_count(hf_model) == sum(int(np.prod(v.shape)) for v in model.trainable_variables)

    # The bare encoder classes and the Auto classes load the same directory offline.
    auto = transformers.AutoModel.from_pretrained(out, local_files_only=True).eval()
    assert type(auto).__name__ == ("AlbertModel" if kind == "albert" else "NezhaModel")
    with torch.no_grad():
        seq = auto(input_ids=torch.from_numpy(batch["input_ids"]), attention_mask=torch.from_numpy(batch["input_mask"]),
                   token_type_ids=torch.from_numpy(batch["segment_ids"])).last_hidden_state.numpy()
    ours = model({k: tf.constant(v) for k, v in batch.items()})["sequence_output"].numpy()
    assert np.abs(seq - ours).max() < ATOL
    tok = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert tok("tok5 tok6")["input_ids"] == [2, 5, 6, 3]  # [CLS] tok5 tok6 [SEP] in the synthetic vocab


@pytest.mark.parametrize("share_type,hidden_act,hf_act", [("all", "gelu", "gelu_new"),
                                                           ("none", "gelu_exact", "gelu"),
                                                           ("attention", "relu", "relu")])
def test_albert_sharing_and_activations_map_exactly(share_type, hidden_act, hf_act, tmp_path, monkeypatch):
    cfg = ModelConfig.from_dict(tiny_config("albert", num_hidden_layers=3, share_type=share_type,
                                            hidden_act=hidden_act))
    model = randomised(build_model("albert", cfg, max_predictions_per_seq=3))
    if share_type == "attention":
        with pytest.raises(convert_hf.ConversionRefused, match="--untie_shared_attention"):
            convert_hf.to_hf_model(model, "albert")
    hf_model = convert_hf.convert_model(model, "albert", str(tmp_path / "hf"), untie_shared_attention=True)
    groups = {"all": 1, "none": 3, "attention": 3}[share_type]
    assert (hf_model.config.num_hidden_groups, hf_model.config.hidden_act) == (groups, hf_act)
    reloaded = transformers.AlbertForPreTraining.from_pretrained(str(tmp_path / "hf"), local_files_only=True)
    diffs = run_both(model, reloaded, "albert", fixed_batch(cfg.vocab_size))
    assert max(diffs.values()) < EXACT, diffs
    if hidden_act.startswith("gelu"):  # control: the other GELU variant is detected
        monkeypatch.setitem(convert_hf.HF_ACTIVATIONS, hidden_act, "gelu" if hf_act == "gelu_new" else "gelu_new")
        wrong = run_both(model, convert_hf.to_hf_model(model, "albert"), "albert", fixed_batch(cfg.vocab_size))
        assert max(wrong.values()) > 5 * EXACT, wrong
    extra = 2 * (4 * (32 * 32 + 32) + 2 * 32) if share_type == "attention" else 0  # the two attention copies
    assert hf_parameter_count(reloaded) == albert_parameter_count(cfg) + extra


@pytest.mark.skipif(not HAS_NEZHA, reason="installed transformers has no NEZHA")
def test_nezha_relative_positions_match_transformers(tmp_path):
    # Clipping is reached (K=3 < length 16), so the whole table, clipped distances included, is exercised.
    cfg = ModelConfig.from_dict(tiny_config("nezha", max_relative_position=3, num_hidden_layers=1))
    model = randomised(build_model("nezha", cfg, max_predictions_per_seq=3))
    hf_model = convert_hf.to_hf_model(model, "nezha")
    assert convert_hf.check_nezha_relative_table(hf_model, cfg) < 1e-5
    diffs = run_both(model, hf_model, "nezha", fixed_batch(cfg.vocab_size))
    assert max(diffs.values()) < EXACT, diffs
    odd = ModelConfig.from_dict(tiny_config("nezha", hidden_size=30, num_attention_heads=2))  # head size 15
    with pytest.raises(convert_hf.ConversionRefused, match="odd"):
        convert_hf.to_hf_model(build_model("nezha", odd), "nezha")


def test_refusals(tmp_path):
    with pytest.raises(convert_hf.ConversionRefused, match="swish"):
        convert_hf.hf_activation("swish")
    cfg = ModelConfig.from_dict(tiny_config("albert"))
    model = build_model("albert", cfg)
    with pytest.raises(convert_hf.ConversionRefused, match="vocab has 3 tokens"):
        convert_hf.to_hf_model(model, "albert", vocab_tokens=["[PAD]", "[UNK]", "[CLS]"])
    # The CLI reports a refusal with exit status 2 and writes nothing.
    config = tmp_path / "albert_config.json"
    ModelConfig.from_dict(tiny_config("albert", share_type="attention")).to_json_file(config)
    weights = str(tmp_path / "w.weights.h5")
    build_model("albert", ModelConfig.from_json_file(config), max_predictions_per_seq=4).save_weights(weights)
    out = tmp_path / "hf"
    assert convert_hf.main(["--model_dir", str(tmp_path), "--model", "albert", "--config", str(config),
                            "--checkpoint", weights, "--output", str(out)]) == 2
    assert not out.exists() or not os.listdir(out)
