"""Issue 18 items 1-2: general distillation (trainer_hooks.distill) and the two-stage recipe, at tiny size on CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.test_trainer import REPO, checkpoint_values, read_log, subprocess_env  # noqa: E402
from trainer_hooks import distill, distill_losses as dl, export, finetune, pretrain  # noqa: E402
from trainer_hooks.config import ModelConfig  # noqa: E402
from trainer_hooks.finetune_init import load_encoder  # noqa: E402
from trainer_hooks.models import build_model  # noqa: E402
from trainer_hooks.models.common import dummy_features  # noqa: E402
from trainer_hooks.synthetic import tiny_config, write_dataset  # noqa: E402

# Teacher 4 x 32 (4 heads); student 2 x 24 (2 heads): widths and head counts differ, so the projections and the
# head-averaged attention loss are exercised.
TEACHER = dict(num_hidden_layers=4, share_type="none", initializer_range=0.2)  # wide init: peaked MLM outputs
STUDENT = dict(num_hidden_layers=2, hidden_size=24, num_attention_heads=2, intermediate_size=32, share_type="none",
               embedding_size=24)


def write_json(path, obj) -> str:
    with open(path, "w") as f:
        json.dump(obj, f)
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """Shards + manifest, a 4-step pretrained teacher run and a student config."""
    root = tmp_path_factory.mktemp("distill")
    write_dataset(str(root / "data"), num_shards=2, per_shard=8, token_boundary=True)
    teacher_cfg = write_json(root / "teacher.json", tiny_config("albert", **TEACHER))
    data_args = ["--input", str(root / "data" / "tfrecords" / "*"), "--manifest", str(root / "data" / "manifest.json")]
    teacher = str(root / "teacher")
    assert pretrain.main([*data_args, "--model", "albert", "--config", teacher_cfg, "--model_dir", teacher,
                          "--num_train_steps", "4", "--train_batch_size", "4", "--learning_rate", "1e-3"]) == 0
    return {"root": root, "data": data_args, "teacher": teacher, "teacher_config": teacher_cfg,
            "student_config": write_json(root / "student.json", tiny_config("albert", **STUDENT)),
            "vocab": str(root / "data" / "vocab.txt")}


def distill_args(s: dict, model_dir, steps: int, *extra: str, teacher=None, student=None) -> list[str]:
    return ["--teacher", str(teacher or s["teacher"]), "--student_config", str(student or s["student_config"]),
            *s["data"], "--model_dir", str(model_dir), "--num_train_steps", str(steps), "--train_batch_size", "4",
            "--learning_rate", "1e-3", *extra]


# -- parsing and losses --------------------------------------------------------------------------------------------

def test_layer_maps_and_loss_weights():
    assert dl.parse_layer_map("uniform", 4, 12) == [(0, 0), (1, 3), (2, 6), (3, 9), (4, 12)]
    assert dl.parse_layer_map("uniform", 6, 12) == [(0, 0), (1, 2), (2, 4), (3, 6), (4, 8), (5, 10), (6, 12)]
    assert dl.parse_layer_map("uniform", 3, 4) == [(0, 0), (1, 2), (2, 3), (3, 4)]  # rounded up
    assert dl.parse_layer_map("uniform", 3, 2) == [(0, 0), (1, 1), (2, 2), (3, 2)]
    assert dl.parse_layer_map("2:12, 0:0,1:5", 2, 12) == [(0, 0), (1, 5), (2, 12)]
    for bad, match in [("3:1", "student layer 3 .* out of range 0..2"), ("1:13", "teacher layer 13 .* 0..12"),
                       ("1:0", "0 maps only to 0"), ("0:1", "0 maps only to 0"), ("1:2,1:3", "mapped twice"),
                       ("1-2", "STUDENT:TEACHER"), ("", "empty"), ("-1:2", "out of range")]:
        with pytest.raises(dl.MapError, match=match):
            dl.parse_layer_map(bad, 2, 12)
    assert dl.parse_loss_weights("emb=1,hidden=1,attn=1,logits=1") == {"emb": 1, "hidden": 1, "attn": 1,
                                                                       "logits": 1, "mlm": 0}
    assert dl.parse_loss_weights("logits=0.5, mlm=2") == {"emb": 0, "hidden": 0, "attn": 0, "logits": 0.5,
                                                          "mlm": 2}
    for bad, match in [("emb=1,foo=2", "NAME one of"), ("emb=x", "not a number"), ("emb=-1", ">= 0"),
                       ("emb=0", "nothing to train"), ("emb=1,emb=2", "twice"), ("emb", "NAME=WEIGHT")]:
        with pytest.raises(dl.MapError, match=match):
            dl.parse_loss_weights(bad)
    with pytest.raises(dl.MapError, match="no 0:0 pair"):
        dl.check_plan([(1, 2)], dl.parse_loss_weights("emb=1"))
    dl.check_plan([(1, 2)], dl.parse_loss_weights("hidden=1,logits=1"))


def test_losses_equal_numpy_references():
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32)
    s, t = rng.normal(size=(2, 4, 3)).astype(np.float32), rng.normal(size=(2, 4, 3)).astype(np.float32)
    want = sum(((s[b, i] - t[b, i]) ** 2).mean() for b in range(2) for i in range(4) if mask[b, i]) / mask.sum()
    np.testing.assert_allclose(dl.masked_mse(s, t, mask).numpy(), want, rtol=1e-5)

    def att_ref(a, c):
        if a.shape[1] != c.shape[1]:
            a, c = a.mean(1, keepdims=True), c.mean(1, keepdims=True)
        vals = [(a[b, n, i, j] - c[b, n, i, j]) ** 2 for b in range(2) for n in range(a.shape[1])
                for i in range(4) for j in range(4) if mask[b, i] and mask[b, j]]
        return np.mean(vals)

    sa, ta, tb = (rng.normal(size=(2, h, 4, 4)).astype(np.float32) for h in (2, 2, 3))
    np.testing.assert_allclose(dl.attention_mse(sa, ta, mask).numpy(), att_ref(sa, ta), rtol=1e-5)
    np.testing.assert_allclose(dl.attention_mse(sa, tb, mask).numpy(), att_ref(sa, tb), rtol=1e-5)

    zs, zt = rng.normal(size=(2, 3, 5)).astype(np.float32), rng.normal(size=(2, 3, 5)).astype(np.float32)
    w = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    for temp in (1.0, 4.0):
        p = np.exp(zt / temp) / np.exp(zt / temp).sum(-1, keepdims=True)
        logq = zs / temp - np.log(np.exp(zs / temp).sum(-1, keepdims=True))
        want = (-(p * logq).sum(-1) * w).sum() / w.sum()
        np.testing.assert_allclose(dl.soft_cross_entropy(zs, zt, w, temp).numpy(), want, rtol=1e-4)
    # Identical distributions: the soft cross-entropy is their entropy, its minimum over the student.
    assert dl.soft_cross_entropy(zt, zt, w, 1.0).numpy() < dl.soft_cross_entropy(zs, zt, w, 1.0).numpy()


@pytest.mark.parametrize("kind", ["albert", "nezha"])
def test_models_expose_hidden_states_and_attention_scores(kind):
    cfg = ModelConfig.from_dict(tiny_config(kind, num_hidden_layers=3, share_type="attention",
                                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    model = build_model(kind, cfg)
    feats = dummy_features(8, 4, batch_size=2)
    feats["input_ids"] = tf.constant(np.random.default_rng(1).integers(5, 40, (2, 8)))
    feats["input_mask"] = tf.constant([[1] * 8, [1] * 5 + [0] * 3], tf.int64)
    plain, rich = model(feats), model(feats, output_internals=True)
    assert set(plain) == {"mlm_logits", "sentence_logits", "sequence_output", "pooled_output"}
    for k in plain:
        np.testing.assert_array_equal(plain[k].numpy(), rich[k].numpy())
    assert len(rich["hidden_states"]) == 4 and len(rich["attention_scores"]) == 3
    np.testing.assert_array_equal(rich["hidden_states"][-1].numpy(), rich["sequence_output"].numpy())
    assert rich["attention_scores"][0].shape == (2, 4, 8, 8) and rich["attention_scores"][0].dtype == tf.float32
    # Layer 1's scores are q.k / sqrt(d) of the embedding output (NEZHA adds q.r_ij, its relative term).
    block = model.encoder.attention_blocks[0]
    x = rich["hidden_states"][0].numpy()
    q = (x @ block.query.kernel.numpy() + block.query.bias.numpy()).reshape(2, 8, 4, 8).transpose(0, 2, 1, 3)
    k = (x @ block.key.kernel.numpy() + block.key.bias.numpy()).reshape(2, 8, 4, 8).transpose(0, 2, 1, 3)
    want = np.einsum("bnid,bnjd->bnij", q, k) / np.sqrt(8)
    if kind == "nezha":
        want += np.einsum("bnid,ijd->bnij", q, model.encoder.relative_embeddings(8).numpy()) / np.sqrt(8)
    np.testing.assert_allclose(rich["attention_scores"][0].numpy(), want, atol=1e-5)


# -- training ------------------------------------------------------------------------------------------------------

def test_student_learns_teacher_and_teacher_is_inference_only(setup, tmp_path):
    out, dump = tmp_path / "student", tmp_path / "dump"
    no_dropout = write_json(tmp_path / "s.json", tiny_config("albert", **STUDENT, hidden_dropout_prob=0.0,
                                                             attention_probs_dropout_prob=0.0))
    assert distill.main(distill_args(setup, out, 30, "--learning_rate", "1e-2", "--optimizer", "adamw",
                                     "--weight_decay", "0", "--debug_dump_weights", str(dump),
                                     student=no_dropout)) == 0
    log = read_log(str(out))
    assert [r["step"] for r in log] == list(range(1, 31))
    # Every loss falls (measured: to 0.27-0.47 of its start); for the logits, the KL part of the cross-entropy.
    for key in ("emb_loss", "hidden_loss", "attn_loss", "logits_kl"):
        first, last = np.mean([r[key] for r in log[:3]]), np.mean([r[key] for r in log[-3:]])
        assert last < 0.6 * first, (key, first, last)
    for r in log:
        assert r["loss"] == pytest.approx(r["emb_loss"] + r["hidden_loss"] + r["attn_loss"] + r["logits_loss"],
                                          rel=1e-5)
    run_args = json.loads((out / "run_args.json").read_text())
    assert run_args["model"] == "albert" and run_args["distill"]["layer_map"] == [[0, 0], [1, 2], [2, 4]]
    assert ModelConfig.from_json_file(out / "model_config.json") == ModelConfig.from_json_file(no_dropout)

    # The checkpoint restores the student as a pretraining checkpoint does (the student under "model") and holds,
    # besides counters, exactly: the student, the projections and 2 LAMB/Adam slots per trained variable. Nothing
    # of the teacher (37,428 values) and no slots for the pooler and sentence head, which no loss reaches.
    ckpt = checkpoint_values(str(out / "ckpt-30"))
    student = build_model("albert", ModelConfig.from_json_file(no_dropout))
    tf.train.Checkpoint(model=student).read(str(out / "ckpt-30")).assert_existing_objects_matched().expect_partial()
    final = np.load(dump / "weights_rank0.npz")
    for v in student.weights:  # dropout RNG states are named by a per-process counter: not compared
        np.testing.assert_array_equal(final[v.path], v.numpy(), err_msg=v.path)
    size = lambda vs: sum(int(np.prod(v.shape)) for v in vs)  # noqa: E731
    heads = [student.encoder.pooler.kernel, student.encoder.pooler.bias, student.sentence_head.kernel,
             student.sentence_head.bias]
    projections = 2 * (24 * 32 + 32)  # W_e and W_h with their biases, 24 -> 32
    trained = size(student.trainable_variables) - size(heads) + projections
    counters = 2 + 2 + 4  # optimizer iterations and learning rate, loss scale and good steps, step/records/skipped/save
    assert sum(v.size for v in ckpt.values()) == size(student.variables) + projections + 2 * trained + counters
    assert run_args["distill"]["trained_variables"] == len(student.trainable_variables) - 4 + 4
    # The teacher's weights after 30 steps are those of its checkpoint.
    after = np.load(dump / "teacher_rank0.npz")
    teacher = build_model("albert", ModelConfig.from_json_file(setup["teacher_config"]))
    tf.train.Checkpoint(model=teacher).read(tf.train.latest_checkpoint(setup["teacher"])).expect_partial()
    assert sum(not f.startswith("seed_generator") for f in after.files) == len(teacher.weights) > 40
    for v in teacher.weights:
        np.testing.assert_array_equal(after[v.path], v.numpy(), err_msg=v.path)


def test_kill_and_resume_equals_uninterrupted(setup, tmp_path):
    common = ("--deterministic", "--save_checkpoints_steps", "2", "--gradient_accumulation_steps", "2",
              "--shuffle_buffer", "4", "--dynamic_masking", "--vocab_file", setup["vocab"], "--precision", "bf16",
              "--layer_map", "0:0,1:1,2:4", "--temperature", "3", "--loss_weights",
              "emb=1,hidden=2,attn=1,logits=1,mlm=0.5")
    straight = tmp_path / "straight"
    assert distill.main(distill_args(setup, straight, 5, *common)) == 0
    resumed = tmp_path / "resumed"
    killed = subprocess.run([sys.executable, "-m", "trainer_hooks.distill",
                             *distill_args(setup, resumed, 5, *common, "--debug_kill_at_step", "3")],
                            cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert tf.train.latest_checkpoint(str(resumed)).endswith("ckpt-2")
    assert distill.main(distill_args(setup, resumed, 5, *common)) == 0
    a, b = read_log(str(straight)), read_log(str(resumed))
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    want, got = checkpoint_values(str(straight / "ckpt-5")), checkpoint_values(str(resumed / "ckpt-5"))
    assert want.keys() == got.keys() and any(k.startswith("optimizer/") for k in want)
    for k in want:
        np.testing.assert_array_equal(want[k], got[k], err_msg=k)


def test_teacher_sources_run_dir_prefix_export_and_import(setup, tmp_path):
    """A run directory, its ckpt-N prefix and its export resolve to the same teacher weights; an imported release
    checkpoint is a teacher too (run end to end, in fp16)."""
    from tests.test_import_checkpoint import write_bert_release
    from trainer_hooks import import_checkpoint
    exported = str(tmp_path / "export")
    assert export.main(["--model_dir", setup["teacher"], "--output", exported]) == 0
    weights, sources = {}, {}
    for name, teacher in [("dir", setup["teacher"]), ("prefix", tf.train.latest_checkpoint(setup["teacher"])),
                          ("export", exported)]:
        plan = distill.make_plan(distill.parse_args(distill_args(setup, tmp_path / "x", 1, teacher=teacher)))
        assert plan["teacher_kind"] == plan["student_kind"] == "albert"
        sources[name] = plan["teacher_init"]["source"]
        model = load_encoder(plan["teacher_kind"], plan["teacher_init"], "float32", 0)
        weights[name] = [v.numpy() for v in model.weights]
    assert sources == {"dir": "checkpoint", "prefix": "checkpoint", "export": "export"}
    for name in ("prefix", "export"):
        assert len(weights[name]) == len(weights["dir"]) > 40
        for a, b in zip(weights["dir"], weights[name]):
            np.testing.assert_array_equal(a, b)
    prefix = write_bert_release(tmp_path / "release", setup["vocab"], 16)
    imported = str(tmp_path / "imported")
    assert import_checkpoint.main(["--checkpoint", prefix, "--config", str(tmp_path / "release" / "bert_config.json"),
                                   "--model", "albert", "--flavour", "google_bert", "--output", imported,
                                   "--vocab_file", setup["vocab"]]) == 0
    out = tmp_path / "from_import"
    assert distill.main(distill_args(setup, out, 1, "--precision", "fp16", teacher=imported)) == 0
    run_args = json.loads((out / "run_args.json").read_text())
    assert run_args["distill"]["teacher_source"] == os.path.join(imported, "ckpt-0")
    assert run_args["distill"]["layer_map"] == [[0, 0], [1, 1], [2, 2]]  # the release has 2 layers
    assert read_log(str(out))[0]["loss_scale"] == 2.0 ** 15


def test_two_stage_recipe_then_finetune_and_export(setup, tmp_path):
    """teacher (4 x 32) -> assistant (3 x 32, NEZHA) -> student (2 x 24, NEZHA); the student fine-tunes and
    exports like any pretraining run."""
    from tests.test_finetune import pair_file
    assistant_cfg = write_json(tmp_path / "assistant.json", tiny_config("nezha", num_hidden_layers=3))
    student_cfg = write_json(tmp_path / "student.json", tiny_config("nezha", **STUDENT))
    assistant, student = tmp_path / "assistant", tmp_path / "student"
    assert distill.main(distill_args(setup, assistant, 3, "--model", "nezha", student=assistant_cfg)) == 0
    assert json.loads((assistant / "run_args.json").read_text())["distill"]["layer_map"] == [[0, 0], [1, 2], [2, 3],
                                                                                          [3, 4]]
    assert distill.main(distill_args(setup, student, 3, "--loss_weights", "hidden=1,logits=1", "--temperature",
                                     "8", teacher=assistant, student=student_cfg)) == 0
    run_args = json.loads((student / "run_args.json").read_text())
    assert run_args["model"] == "nezha" and run_args["distill"]["teacher_model"] == "nezha"
    assert run_args["distill"]["teacher_source"] == str(assistant / "ckpt-3")
    assert "emb_loss" not in read_log(str(student))[0] and "attn_loss" not in read_log(str(student))[0]

    exported = tmp_path / "export"
    assert export.main(["--model_dir", str(student), "--output", str(exported)]) == 0
    assert (exported / "vocab.txt").read_bytes() == open(setup["vocab"], "rb").read()
    model = build_model("nezha", ModelConfig.from_json_file(student / "model_config.json"))
    tf.train.Checkpoint(model=model).read(str(student / "ckpt-3")).expect_partial().assert_existing_objects_matched()
    ids = tf.constant([[2, 7, 8, 3, 9, 3, 0]], tf.int32)
    mask = tf.cast(ids > 0, tf.int32)
    loaded = tf.saved_model.load(str(exported / "saved_model"))  # held: its variables must outlive the call
    got = loaded.serve(ids, mask, tf.zeros_like(ids))
    seq, _ = model.encoder(ids, tf.zeros_like(ids), mask)
    np.testing.assert_allclose(got["sequence_output"].numpy(), seq.numpy(), atol=1e-5)

    ft = tmp_path / "ft"
    train, dev = pair_file(tmp_path / "train.tsv", 12, 0), pair_file(tmp_path / "dev.tsv", 6, 1)
    assert finetune.main(["--task", "pair", "--train", train, "--dev", dev, "--model", "nezha", "--init",
                          str(student), "--output", str(ft), "--max_seq_length", "16", "--num_epochs", "1",
                          "--batch_size", "4"]) == 0
    metrics = json.loads((ft / "metrics.json").read_text())
    assert metrics["init"] == str(student) and metrics["labels"] == ["0", "1"]
    assert (ft / "export" / "saved_model").is_dir()


# -- refusals ------------------------------------------------------------------------------------------------------

def test_bad_input_is_refused_before_training_with_one_line(setup, tmp_path, capsys):
    root = setup["root"]
    not_model = tmp_path / "empty"
    not_model.mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    cases = [
        ({"student": write_json(tmp_path / "v.json", tiny_config("albert", vocab_size=50, **STUDENT))},
         [], "student config vocab_size 50 != teacher vocab_size 40"),
        ({"student": write_json(tmp_path / "p.json", tiny_config("albert", max_position_embeddings=32, **STUDENT))},
         [], "student config max_position_embeddings 32 != teacher's 16"),
        ({"student": write_json(tmp_path / "q.json", tiny_config("albert", max_position_embeddings=8, **STUDENT))},
         ["--teacher_model", "albert"], "manifest max_seq_length 16 > student config max_position_embeddings 8"),
        ({}, ["--layer_map", "1:1,3:4"], "student layer 3 in '3:4' is out of range 0..2"),
        ({}, ["--layer_map", "0:0,1:5"], "teacher layer 5 in '1:5' is out of range 0..4"),
        ({"teacher": not_model}, [], "is not a model"),
        ({"teacher": tmp_path / "notes.txt"}, [], "is not a model"),
        ({"teacher": tmp_path / "missing"}, [], "does not exist"),
    ]
    for kw, extra, message in cases:
        out = tmp_path / "never"
        assert distill.main(distill_args(setup, out, 2, *extra, **kw)) == 2, message
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[distill]")]
        assert len(err) == 1 and message in err[0] and "refusing to start" in err[0], (message, err)
        assert not out.exists()
    # A teacher whose vocabulary is not the manifest's (same size, other tokens).
    other = tmp_path / "other_vocab"
    shutil.copytree(setup["teacher"], other)
    args = json.loads((other / "run_args.json").read_text())
    (tmp_path / "vocab.txt").write_text("\n".join(f"x{i}" for i in range(40)) + "\n")
    (other / "run_args.json").write_text(json.dumps({**args, "vocab_file": str(tmp_path / "vocab.txt")}))
    assert distill.main(distill_args(setup, tmp_path / "never", 2, teacher=other)) == 2
    assert "the teacher's vocab" in capsys.readouterr().err
    # A checkpoint that does not fit the teacher's config: refused when the teacher is loaded, still before step 1.
    bad = tmp_path / "misfit"
    shutil.copytree(setup["teacher"], bad)
    cfg = json.loads((bad / "model_config.json").read_text())
    (bad / "model_config.json").write_text(json.dumps({**cfg, "intermediate_size": 48}))
    assert distill.main(distill_args(setup, tmp_path / "misfit_out", 2, teacher=bad)) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[distill]")]
    assert len(err) == 1 and "does not load" in err[0], err
    assert not (tmp_path / "misfit_out").exists()
    for bad in (["--loss_weights", "emb=1,bogus=1"], ["--temperature", "0"]):
        with pytest.raises(SystemExit) as usage:
            distill.parse_args(distill_args(setup, tmp_path / "x", 2, *bad))
        assert usage.value.code == 2
    assert root.exists()


def test_help_names_every_default_and_keeps_the_pretrain_options():
    from trainer_hooks import cli
    p = distill.build_parser()
    assert cli.undocumented_defaults(p) == []
    ours = {a.dest for a in p._actions}
    theirs = {a.dest for a in pretrain.build_parser()._actions}
    assert theirs - ours == {"config"}  # --student_config instead; --model is optional (the teacher's)


def test_two_ranks_under_horovodrun(setup, tmp_path):
    pytest.importorskip("horovod.tensorflow", reason="horovod not installed (scripts/build_horovod.sh)",
                        exc_type=ImportError)
    from tests.test_trainer_horovod import horovodrun
    out, dump = tmp_path / "hvd", tmp_path / "dump"
    cmd = [horovodrun(), "-np", "2", "-H", "localhost:2", sys.executable, "-m", "trainer_hooks.distill",
           *distill_args(setup, out, 3, "--horovod", "--deterministic", "--debug_seed_per_rank",
                         "--debug_dump_weights", str(dump))]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Ranks started from different student weights and read different shards: equal weights at the end prove the
    # broadcast and the all-reduce; the teachers were never touched.
    w0, w1 = (np.load(dump / f"weights_rank{r}.npz") for r in (0, 1))
    assert w0.files == w1.files and len(w0.files) > 10
    for name in w0.files:
        np.testing.assert_array_equal(w0[name], w1[name], err_msg=name)
    t0, t1 = (np.load(dump / f"teacher_rank{r}.npz") for r in (0, 1))
    for name in t0.files:
        np.testing.assert_array_equal(t0[name], t1[name], err_msg=name)
    assert [r["step"] for r in read_log(str(out))] == [1, 2, 3]
