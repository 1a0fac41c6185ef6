"""Tests of trainer_hooks: models, input checks, optimisation, resume and export (CPU, tiny configs)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from trainer_hooks import data, pretrain  # noqa: E402
from trainer_hooks.config import ModelConfig, shipped_config  # noqa: E402
from trainer_hooks.models import build_model  # noqa: E402
from trainer_hooks.models.albert import albert_parameter_count  # noqa: E402
from trainer_hooks.models.nezha import relative_position_index, relative_position_table  # noqa: E402
from trainer_hooks.optim import DynamicLossScale, WarmupPolynomialDecay, build_optimizer, no_decay  # noqa: E402
from trainer_hooks.synthetic import tiny_config, write_dataset  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- helpers shared with test_trainer_horovod.py ----------------------------------------------------------------

def make_run_dir(root, kind: str = "albert", config_overrides: dict | None = None, **data_kwargs) -> dict:
    """Write shards + manifest under ``root/data`` and a tiny config; return paths for the CLI."""
    root = str(root)
    manifest = write_dataset(os.path.join(root, "data"), **data_kwargs)
    cfg = tiny_config(kind, vocab_size=manifest["tfrecords"]["vocab_size"],
                      max_position_embeddings=manifest["tfrecords"]["max_seq_length"], **(config_overrides or {}))
    config_path = os.path.join(root, f"{kind}_config.json")
    with open(config_path, "w") as f:
        json.dump(cfg, f)
    return {"root": root, "input": os.path.join(root, "data", "tfrecords", "*"),
            "manifest": os.path.join(root, "data", "manifest.json"), "config": config_path, "kind": kind,
            "vocab": os.path.join(root, "data", "vocab.txt")}


def cli_args(run: dict, model_dir: str, steps: int, *extra: str, batch: int = 4) -> list[str]:
    return ["--input", run["input"], "--manifest", run["manifest"], "--model", run["kind"], "--config",
            run["config"], "--model_dir", model_dir, "--num_train_steps", str(steps), "--train_batch_size",
            str(batch), "--learning_rate", "1e-3", *extra]


def read_log(model_dir: str) -> list[dict]:
    with open(os.path.join(model_dir, "train_log.jsonl")) as f:
        return [json.loads(line) for line in f]


def checkpoint_values(path: str) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(path)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


# -- models ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("share_type", ["all", "attention", "none"])
def test_albert_parameter_count_matches_formula(share_type):
    cfg = ModelConfig.from_dict(tiny_config("albert", vocab_size=50, num_hidden_layers=3, share_type=share_type))
    model = build_model("albert", cfg)
    count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert count == albert_parameter_count(cfg)
    # Sharing is real: "all" has exactly one attention and one FFN block whatever the depth.
    if share_type == "all":
        assert len(model.encoder.attention_blocks) == 1 and len(model.encoder.ffn_blocks) == 1


def test_shipped_albert_tiny_size_and_config_round_trip(tmp_path):
    cfg = ModelConfig.from_json_file(shipped_config("albert_config_tiny"))
    # albert_zh advertises albert_tiny as a ~4M-parameter model.
    assert 4_000_000 < albert_parameter_count(cfg) < 4_300_000
    out = tmp_path / "round.json"
    cfg.to_json_file(out)
    again = ModelConfig.from_json_file(out)
    assert again == cfg and again.extra["pooler_type"] == "first_token_transform"
    for name in ("albert_config_small", "albert_config_base", "nezha_config_tiny", "nezha_config_base"):
        ModelConfig.from_json_file(shipped_config(name))


def test_nezha_relative_position_table_is_closed_form_sinusoid():
    k, depth = 5, 6
    table = relative_position_table(k, depth)
    assert table.shape == (2 * k + 1, depth)
    for pos in range(2 * k + 1):
        for i in range(depth // 2):
            angle = pos / 10000 ** (2 * i / depth)
            assert table[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-6)
    index = relative_position_index(9, k).numpy()
    for i in range(9):
        for j in range(9):
            assert index[i, j] == min(max(j - i, -k), k) + k
    cfg = ModelConfig.from_dict(tiny_config("nezha", max_relative_position=k))
    model = build_model("nezha", cfg)
    emb = model.encoder.relative_embeddings(9).numpy()
    np.testing.assert_allclose(emb, relative_position_table(k, cfg.head_size)[index])
    # No absolute position embeddings anywhere in NEZHA.
    assert not [v.path for v in model.variables if "position" in v.path]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_forward_is_finite_with_float32_variables(precision):
    cfg = ModelConfig.from_dict(tiny_config("nezha"))
    model = build_model("nezha", cfg, dtype=pretrain.PRECISIONS[precision])
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    out = model({"input_ids": tf.ones([2, 16], tf.int64), "input_mask": tf.ones([2, 16], tf.int64),
                 "segment_ids": tf.zeros([2, 16], tf.int64), "masked_lm_positions": tf.ones([2, 4], tf.int64)})
    assert out["mlm_logits"].dtype == tf.float32 and bool(tf.reduce_all(tf.math.is_finite(out["mlm_logits"])))


# -- optimisation pieces -----------------------------------------------------------------------------------------

def test_schedule_weight_decay_exclusion_and_loss_scale():
    sched = WarmupPolynomialDecay(1.0, total_steps=10, warmup_steps=2)
    assert [round(float(sched(s)), 4) for s in (0, 1, 2, 5, 10, 12)] == [0.0, 0.5, 0.8, 0.5, 0.0, 0.0]
    model = build_model("albert", ModelConfig.from_dict(tiny_config("albert")))
    excluded = {v.path for v in model.trainable_variables if no_decay(v)}
    assert all(p.endswith(("bias", "gamma", "beta")) for p in excluded)
    assert not any(p.endswith("kernel") or p.endswith("embeddings") for p in excluded)
    assert build_optimizer("lamb", model.trainable_variables).__class__.__name__ == "Lamb"
    ls = DynamicLossScale(8.0, growth_interval=2)
    for finite, expected in [(False, 4.0), (True, 4.0), (True, 8.0), (False, 4.0)]:
        ls.update(tf.constant(finite))
        assert float(ls.scale.numpy()) == expected


# -- input -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def albert_run(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("albert_run"), "albert", num_shards=2, per_shard=8,
                        token_boundary=True)


def test_refuses_to_start_on_mismatch(albert_run, tmp_path, capsys):
    run = albert_run
    manifest = data.load_manifest(run["manifest"])
    shards = data.resolve_shards(run["input"], manifest)
    cfg = ModelConfig.from_json_file(run["config"])
    data.check_run(manifest, cfg, shards, world_size=2, vocab_file=run["vocab"])  # consistent: no error
    bad_cases = {
        "vocab_size": (dict(config=ModelConfig.from_dict({**cfg.to_dict(), "vocab_size": 41})), {}),
        "max_position_embeddings": (dict(config=ModelConfig.from_dict({**cfg.to_dict(),
                                                                        "max_position_embeddings": 8})), {}),
        "max_seq_length 32": (dict(config=cfg), {"max_seq_length": 32}),
        "max_predictions_per_seq 5": (dict(config=cfg), {"max_predictions_per_seq": 5}),
        "vocab_sha256": (dict(config=ModelConfig.from_dict({**cfg.to_dict(), "vocab_sha256": "0" * 64})), {}),
        "2 shard(s) for 3 ranks": (dict(config=cfg, world_size=3), {}),
    }
    for needle, (kw, flags) in bad_cases.items():
        with pytest.raises(data.InputRefused, match=needle.split()[0]) as err:
            data.check_run(manifest, kw["config"], shards, kw.get("world_size", 1), **flags)
        assert needle in str(err.value)
    other_vocab = tmp_path / "vocab.txt"
    other_vocab.write_text("[PAD]\n")
    with pytest.raises(data.InputRefused, match="--vocab_file"):
        data.check_run(manifest, cfg, shards, 1, vocab_file=str(other_vocab))
    with pytest.raises(data.InputRefused, match="matches no files"):
        data.resolve_shards(str(tmp_path / "nothing" / "*"), manifest)
    # The CLI turns a refusal into a message and exit status 2, before building anything.
    model_dir = str(tmp_path / "out")
    assert pretrain.main(cli_args(run, model_dir, 1, "--max_seq_length", "64")) == 2
    assert pretrain.main(cli_args({**run, "input": str(tmp_path / "none*")}, model_dir, 1)) == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err and "matches no files" in err
    assert not os.path.exists(os.path.join(model_dir, "train_log.jsonl"))


def test_input_resume_position_and_rank_sharding(tmp_path):
    run = make_run_dir(tmp_path, "albert", num_shards=3, per_shard=5, compression="GZIP", absolute_paths=True)
    manifest = data.load_manifest(run["manifest"])
    assert manifest.compression_type == "GZIP"
    shards = data.resolve_shards(run["input"], manifest)
    ranks = [data.rank_shards(shards, r, 2) for r in range(2)]
    assert [len(r) for r in ranks] == [2, 1] and not {s.path for s in ranks[0]} & {s.path for s in ranks[1]}

    def batches(consumed: int, n: int) -> list[np.ndarray]:
        ds = data.make_dataset(manifest, shards, batch_size=4, seed=7, records_consumed=consumed, shuffle_buffer=6)
        return [b["input_ids"].numpy() for b in ds.take(n)]

    full = batches(0, 10)  # 40 records: crosses two epoch boundaries of 15 records
    for skip in (1, 3, 4, 7):
        resumed = batches(4 * skip, 10 - skip)
        for a, b in zip(full[skip:], resumed):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(data.InputRefused, match="token_boundary"):  # these shards have none
        data.make_dataset(manifest, shards, 4, seed=7, masking=data.DynamicMasking(4, 2, 3, (5, 6)))
    # Epochs are reshuffled: the first 15 records differ in order from the next 15.
    flat = np.concatenate(full)
    assert not np.array_equal(flat[:15], flat[15:30])
    assert sorted(map(tuple, flat[:15])) == sorted(map(tuple, flat[15:30]))


def test_dynamic_whole_word_masking(tmp_path):
    run = make_run_dir(tmp_path, "albert", num_shards=2, per_shard=32, max_seq_length=32, max_predictions_per_seq=6,
                       token_boundary=True)
    manifest = data.load_manifest(run["manifest"])
    shards = data.resolve_shards(run["input"], manifest)
    masking = data.DynamicMasking.from_vocab(run["vocab"], 0.15)

    def first_batches(consumed: int = 0, **kw) -> list[dict]:
        ds = data.make_dataset(manifest, shards, 32, seed=5, records_consumed=consumed, shuffle_buffer=1, **kw)
        return [{k: v.numpy() for k, v in b.items()} for b in ds.take(2)]

    static, dynamic = first_batches(), first_batches(masking=masking)
    again = first_batches(masking=masking)
    for b1, b2 in zip(dynamic, again):
        assert all(np.array_equal(b1[k], b2[k]) for k in b1)  # same seed, same masks
    assert not np.array_equal(dynamic[0]["masked_lm_positions"], static[0]["masked_lm_positions"])
    # Resuming one batch later draws the masks of that batch, not of batch 0.
    resumed = first_batches(consumed=32, masking=masking)[0]
    assert all(np.array_equal(resumed[k], dynamic[1][k]) for k in resumed)

    n_mask = n_pred = 0
    for s, d in zip(static, dynamic):
        original = s["input_ids"].copy()  # undo the static masking
        for row in range(len(original)):
            for p, label, w in zip(s["masked_lm_positions"][row], s["masked_lm_ids"][row],
                                   s["masked_lm_weights"][row]):
                if w:
                    original[row, p] = label
        for row in range(len(original)):
            ids, tb, mask = original[row], d["token_boundary"][row], d["input_mask"][row]
            k = int(d["masked_lm_weights"][row].sum())
            pos = d["masked_lm_positions"][row][:k]
            maskable = [i for i in range(len(ids)) if mask[i] and ids[i] not in (2, 3)]  # not [CLS]/[SEP]
            assert 1 <= k <= min(6, max(1, round(0.15 * len(maskable))))
            assert list(pos) == sorted(pos) and set(pos) <= set(maskable)
            np.testing.assert_array_equal(d["masked_lm_ids"][row][:k], ids[pos])
            untouched = [i for i in range(len(ids)) if i not in set(pos)]
            np.testing.assert_array_equal(d["input_ids"][row][untouched], ids[untouched])
            for p in pos:  # whole words: the rest of each chosen word is chosen too
                q = p + 1
                while q < len(ids) and q in maskable and not tb[q]:
                    assert q in pos
                    q += 1
                if not tb[p]:
                    assert p - 1 in pos
            n_mask += int((d["input_ids"][row][pos] == 4).sum())
            n_pred += k
    assert 0.65 < n_mask / n_pred < 0.95  # ~80% [MASK]


# -- training ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["albert", "nezha"])
def test_tiny_model_overfits_a_handful_of_instances(kind, tmp_path):
    run = make_run_dir(tmp_path, kind, config_overrides={"hidden_dropout_prob": 0.0,
                                                         "attention_probs_dropout_prob": 0.0},
                       num_shards=1, per_shard=8, patterned=True, repeat_instances=8, seed=1)
    model_dir = str(tmp_path / "out")
    args = cli_args(run, model_dir, 100, "--optimizer", "lamb", "--num_warmup_steps", "5", "--weight_decay", "0",
                    "--shuffle_buffer", "1", "--save_checkpoints_steps", "1000", batch=8)
    args[args.index("--learning_rate") + 1] = "5e-2"
    assert pretrain.main(args) == 0
    log = read_log(model_dir)
    assert [r["step"] for r in log] == list(range(1, 101))
    assert {"step", "loss", "mlm_loss", "sop_loss", "examples_per_sec"} <= set(log[0])
    first = np.mean([r["loss"] for r in log[:3]])
    last = np.mean([r["loss"] for r in log[-5:]])
    assert last < first / 10, (first, last)  # typically ~4.4 -> <0.01 in 100 steps
    assert log[-1]["sop_accuracy"] == 1.0
    assert os.path.exists(os.path.join(model_dir, "ckpt-100.index"))
    assert [f for f in os.listdir(os.path.join(model_dir, "train")) if "tfevents" in f]


@pytest.fixture(scope="module")
def injected_run(albert_run, tmp_path_factory):
    """fp16 run of 4 steps with an infinite gradient injected at step 3, a checkpoint every step."""
    model_dir = str(tmp_path_factory.mktemp("injected"))
    assert pretrain.main(cli_args(albert_run, model_dir, 4, "--precision", "fp16", "--debug_nonfinite_steps", "3",
                                  "--save_checkpoints_steps", "1", "--vocab_file", albert_run["vocab"])) == 0
    return model_dir


def test_nonfinite_step_is_skipped_and_counted(injected_run):
    log = read_log(injected_run)
    assert [r["skipped"] for r in log] == [False, False, True, False]
    assert log[2]["loss"] is not None and log[2]["grad_norm"] is None and log[-1]["skipped_steps"] == 1
    # The dynamic loss scale halves after the bad step (2^15 -> 2^14).
    assert [r["loss_scale"] for r in log] == [2.0 ** 15] * 3 + [2.0 ** 14]
    before, after, later = (checkpoint_values(os.path.join(injected_run, f"ckpt-{s}")) for s in (2, 3, 4))
    weights = [k for k in before if k.startswith("model/")]
    assert weights and all(np.array_equal(before[k], after[k]) for k in weights)
    assert not all(np.array_equal(after[k], later[k]) for k in weights)
    it = "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"
    assert (before[it], after[it], later[it]) == (2, 2, 3)
    assert all(np.isfinite(later[k]).all() for k in weights)


def test_fp16_overflow_is_skipped_and_halves_the_loss_scale(albert_run, tmp_path):
    model_dir = str(tmp_path / "fp16")
    assert pretrain.main(cli_args(albert_run, model_dir, 3, "--precision", "fp16",
                                  "--initial_loss_scale", str(2.0 ** 100))) == 0
    log = read_log(model_dir)
    assert [r["skipped"] for r in log] == [True] * 3 and log[-1]["skipped_steps"] == 3
    assert [r["loss_scale"] for r in log] == [2.0 ** (100 - i) for i in range(3)]
    final = checkpoint_values(os.path.join(model_dir, "ckpt-3"))
    assert final["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 0


def test_kill_and_resume_equals_uninterrupted(albert_run, tmp_path):
    # Dynamic masking on: the resumed run must also redraw exactly the same masks.
    common = ("--deterministic", "--save_checkpoints_steps", "2", "--gradient_accumulation_steps", "2",
              "--shuffle_buffer", "4", "--dynamic_masking", "--vocab_file", albert_run["vocab"])
    straight = str(tmp_path / "straight")
    assert pretrain.main(cli_args(albert_run, straight, 6, *common)) == 0

    resumed = str(tmp_path / "resumed")
    killed = subprocess.run([sys.executable, "-m", "trainer_hooks.pretrain",
                             *cli_args(albert_run, resumed, 6, *common, "--debug_kill_at_step", "5")],
                            cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert tf.train.latest_checkpoint(resumed).endswith("ckpt-4")
    assert [r["step"] for r in read_log(resumed)] == [1, 2, 3, 4, 5]
    assert pretrain.main(cli_args(albert_run, resumed, 6, *common)) == 0

    a, b = read_log(straight), read_log(resumed)
    assert [r["step"] for r in b] == list(range(1, 7))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    want, got = checkpoint_values(os.path.join(straight, "ckpt-6")), checkpoint_values(os.path.join(resumed, "ckpt-6"))
    assert want.keys() == got.keys() and any(k.startswith("optimizer/") for k in want)
    for k in want:
        np.testing.assert_array_equal(want[k], got[k], err_msg=k)


def test_export_saved_model_config_and_vocab(albert_run, injected_run, tmp_path):
    from trainer_hooks import export
    out = str(tmp_path / "export")
    assert export.main(["--model_dir", injected_run, "--output", out]) == 0
    assert sorted(os.listdir(out)) == ["albert_config.json", "pretraining.weights.h5", "saved_model", "vocab.txt"]
    cfg = ModelConfig.from_json_file(os.path.join(out, "albert_config.json"))
    assert cfg == ModelConfig.from_json_file(albert_run["config"])
    loaded = tf.saved_model.load(os.path.join(out, "saved_model"))
    ids = tf.constant([[2, 7, 8, 3, 9, 3, 0]], tf.int32)
    mask = tf.cast(ids > 0, tf.int32)
    got = loaded.serve(ids, mask, tf.zeros_like(ids))
    model = build_model("albert", cfg)
    model.load_weights(os.path.join(out, "pretraining.weights.h5"))
    seq, pooled = model.encoder(ids, tf.zeros_like(ids), mask)
    np.testing.assert_allclose(got["sequence_output"].numpy(), seq.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["pooled_output"].numpy(), pooled.numpy(), atol=1e-5)
    assert len(loaded.trainable_variables) == len(model.encoder.trainable_variables)
