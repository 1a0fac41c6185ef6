"""Issue 17 item 2: released TF1 checkpoints (Google BERT, google-research ALBERT, NEZHA) imported by their
published variable names. Each test writes a small checkpoint with ``tf.compat.v1`` in the release's exact naming
(plus optimizer slots and ``global_step``, which must be reported as left over), imports it, and compares the
imported model with a plain numpy forward pass over the same weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from trainer_hooks import finetune, import_checkpoint as ic  # noqa: E402

H, I, N, E, V, P, T = 16, 32, 2, 8, 40, 24, 2
BASE = {"hidden_size": H, "intermediate_size": I, "num_attention_heads": N, "vocab_size": V,
        "max_position_embeddings": P, "type_vocab_size": T, "hidden_act": "gelu", "initializer_range": 0.02,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}


def release_variables(flavour: str, layers: int) -> dict[str, tuple]:
    """Variable name -> shape, as each release's modeling.py/run_pretraining.py creates them."""
    e = E if flavour in ("google_albert", "albert_zh") else H
    w = H if flavour == "albert_zh" else e  # albert_zh: type/position embeddings and LayerNorm are H wide
    v = {"bert/embeddings/word_embeddings": (V, e), "bert/embeddings/token_type_embeddings": (T, w),
         "bert/embeddings/LayerNorm/gamma": (w,), "bert/embeddings/LayerNorm/beta": (w,)}
    if flavour != "nezha":
        v["bert/embeddings/position_embeddings"] = (P, w)
    if flavour == "albert_zh":
        v["bert/embeddings/word_embeddings_2"] = (E, H)  # the E -> H projection, no bias

    def dense(name, i, o):
        v[f"{name}/kernel"], v[f"{name}/bias"] = (i, o), (o,)

    def norm(name):
        v[f"{name}/gamma"], v[f"{name}/beta"] = (H,), (H,)

    if flavour == "google_albert":
        dense("bert/encoder/embedding_hidden_mapping_in", E, H)
        p = "bert/encoder/transformer/group_0/inner_group_0"
        for q in ("query", "key", "value"):
            dense(f"{p}/attention_1/self/{q}", H, H)
        dense(f"{p}/attention_1/output/dense", H, H)
        norm(f"{p}/LayerNorm")
        dense(f"{p}/ffn_1/intermediate/dense", H, I)
        dense(f"{p}/ffn_1/intermediate/output/dense", I, H)
        norm(f"{p}/LayerNorm_1")
    else:
        for i in range(1 if flavour == "albert_zh" else layers):
            p = "bert/encoder/layer_shared" if flavour == "albert_zh" else f"bert/encoder/layer_{i}"
            for q in ("query", "key", "value"):
                dense(f"{p}/attention/self/{q}", H, H)
            dense(f"{p}/attention/output/dense", H, H)
            norm(f"{p}/attention/output/LayerNorm")
            dense(f"{p}/intermediate/dense", H, I)
            dense(f"{p}/output/dense", I, H)
            norm(f"{p}/output/LayerNorm")
    dense("bert/pooler/dense", H, H)
    dense("cls/predictions/transform/dense", H, w)
    v["cls/predictions/transform/LayerNorm/gamma"] = (w,)
    v["cls/predictions/transform/LayerNorm/beta"] = (w,)
    v["cls/predictions/output_bias"] = (V,)
    v["cls/seq_relationship/output_weights"] = (2, H)
    v["cls/seq_relationship/output_bias"] = (2,)
    return v


def write_release(path: Path, names: dict[str, tuple], seed: int = 0, drop: tuple = ()) -> tuple[str, dict]:
    """A TF1 checkpoint (tf.compat.v1.train.Saver) with these variables, plus Adam slots and global_step."""
    rng = np.random.default_rng(seed)
    values = {n: (rng.normal(0, 0.3, s) + (1.0 if n.endswith("gamma") else 0.0)).astype(np.float32)
              for n, s in names.items() if n not in drop}
    g = tf.Graph()
    with g.as_default():
        made = [tf.compat.v1.get_variable(n, initializer=tf.constant(x)) for n, x in values.items()]
        made.append(tf.compat.v1.get_variable("bert/pooler/dense/kernel/adam_m", initializer=tf.zeros([H, H])))
        made.append(tf.compat.v1.train.get_or_create_global_step())
        saver = tf.compat.v1.train.Saver(made)
        with tf.compat.v1.Session(graph=g) as s:
            s.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(s, str(path / "model.ckpt"), write_meta_graph=False)
    return prefix, values


# -- numpy reference ----------------------------------------------------------------------------------------------

def ln(x, g, b, eps=1e-12):
    m = x.mean(-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps) * g + b


def gelu(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    return np.exp(x) / np.exp(x).sum(-1, keepdims=True)


def nezha_table(length: int, k: int, depth: int) -> np.ndarray:
    """NEZHA's functional relative positions: sinusoid of the clipped, shifted distance, [L, L, depth]."""
    idx = np.clip(np.arange(length)[None, :] - np.arange(length)[:, None], -k, k) + k
    pos = np.arange(2 * k + 1)[:, None].astype(np.float64)
    div = np.power(10000.0, 2.0 * np.arange(depth // 2) / depth)[None, :]
    table = np.zeros((2 * k + 1, depth))
    table[:, 0::2], table[:, 1::2] = np.sin(pos / div), np.cos(pos / div)
    return table[idx]


def reference(values: dict, flavour: str, layers: int, ids, seg, mask, positions, k: int = 4):
    w = values
    L = ids.shape[1]
    words = w["bert/embeddings/word_embeddings"][ids]
    if flavour == "albert_zh":
        words = words @ w["bert/embeddings/word_embeddings_2"]
    x = words + w["bert/embeddings/token_type_embeddings"][seg]
    if flavour != "nezha":
        x = x + w["bert/embeddings/position_embeddings"][:L][None]
    x = ln(x, w["bert/embeddings/LayerNorm/gamma"], w["bert/embeddings/LayerNorm/beta"])
    if flavour == "google_albert":
        m = "bert/encoder/embedding_hidden_mapping_in"
        x = x @ w[f"{m}/kernel"] + w[f"{m}/bias"]
    rel = nezha_table(L, k, H // N) if flavour == "nezha" else None
    d = H // N
    for i in range(layers):
        if flavour == "google_albert":
            p = "bert/encoder/transformer/group_0/inner_group_0/"
            names = [p + "attention_1/self/", p + "attention_1/output/dense", p + "LayerNorm",
                     p + "ffn_1/intermediate/dense", p + "ffn_1/intermediate/output/dense", p + "LayerNorm_1"]
        else:
            p = "bert/encoder/layer_shared/" if flavour == "albert_zh" else f"bert/encoder/layer_{i}/"
            names = [p + "attention/self/", p + "attention/output/dense", p + "attention/output/LayerNorm",
                     p + "intermediate/dense", p + "output/dense", p + "output/LayerNorm"]
        s, o, n1, fi, fo, n2 = names

        def heads(t):
            return t.reshape(t.shape[0], L, N, d).transpose(0, 2, 1, 3)

        q, kk, v = (heads(x @ w[f"{s}{t}/kernel"] + w[f"{s}{t}/bias"]) for t in ("query", "key", "value"))
        scores = q @ kk.transpose(0, 1, 3, 2)
        if rel is not None:
            scores = scores + np.einsum("bnid,ijd->bnij", q, rel)
        probs = softmax(scores / math.sqrt(d) + (1.0 - mask[:, None, None, :]) * -10000.0)
        ctx = probs @ v
        if rel is not None:
            ctx = ctx + np.einsum("bnij,ijd->bnid", probs, rel)
        ctx = ctx.transpose(0, 2, 1, 3).reshape(x.shape)
        a = ln(x + ctx @ w[f"{o}/kernel"] + w[f"{o}/bias"], w[f"{n1}/gamma"], w[f"{n1}/beta"])
        f = gelu(a @ w[f"{fi}/kernel"] + w[f"{fi}/bias"]) @ w[f"{fo}/kernel"] + w[f"{fo}/bias"]
        x = ln(a + f, w[f"{n2}/gamma"], w[f"{n2}/beta"])
    pooled = np.tanh(x[:, 0] @ w["bert/pooler/dense/kernel"] + w["bert/pooler/dense/bias"])
    sop = pooled @ w["cls/seq_relationship/output_weights"].T + w["cls/seq_relationship/output_bias"]
    picked = np.take_along_axis(x, positions[:, :, None], axis=1)
    t = gelu(picked @ w["cls/predictions/transform/dense/kernel"] + w["cls/predictions/transform/dense/bias"])
    t = ln(t, w["cls/predictions/transform/LayerNorm/gamma"], w["cls/predictions/transform/LayerNorm/beta"])
    if flavour == "albert_zh":
        t = t @ w["bert/embeddings/word_embeddings_2"].T
    mlm = t @ w["bert/embeddings/word_embeddings"].T + w["cls/predictions/output_bias"]
    return x, pooled, sop, mlm


CASES = {"google_bert": ("albert", 2), "google_albert": ("albert", 3), "albert_zh": ("albert", 3),
         "nezha": ("nezha", 2)}


@pytest.mark.parametrize("flavour", sorted(CASES))
def test_imported_model_matches_numpy_forward(flavour, tmp_path):
    kind, layers = CASES[flavour]
    cfg = {**BASE, "num_hidden_layers": layers}
    if flavour == "google_albert":
        cfg.update(embedding_size=E, num_hidden_groups=1, inner_group_num=1)
    if flavour == "albert_zh":
        cfg.update(embedding_size=E)
    if flavour == "nezha":
        cfg.update(use_relative_position=True, max_relative_position=4)
    prefix, values = write_release(tmp_path, release_variables(flavour, layers), seed=len(flavour))
    (tmp_path / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    out = tmp_path / "run"
    assert ic.main(["--checkpoint", prefix, "--config", str(tmp_path / "config.json"), "--model", kind,
                    "--flavour", flavour, "--output", str(out)]) == 0
    report = json.loads((out / "import_report.json").read_text(encoding="utf-8"))
    assert {u["name"] for u in report["used"]} == set(values)
    assert [x["name"] for x in report["left_over"]] == ["bert/pooler/dense/kernel/adam_m", "global_step"]
    assert report["missing"] == []
    assert len(report["synthesised"]) == (2 if flavour == "google_bert" else 0)

    # The run directory is what finetune --init reads; its encoder must compute the release's function.
    spec = finetune.resolve_init(str(out), kind, None)
    model = finetune.load_encoder(kind, spec, "float32", seed=5)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, V, (3, 7))
    seg = np.array([[0] * 4 + [1] * 3] * 3)
    mask = np.array([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4])
    positions = np.array([[1, 2], [0, 4], [2, 1]])
    out = model({"input_ids": tf.constant(ids), "segment_ids": tf.constant(seg), "input_mask": tf.constant(mask),
                 "masked_lm_positions": tf.constant(positions)})
    ref_seq, ref_pooled, ref_sop, ref_mlm = reference(values, flavour, layers, ids, seg, mask.astype(np.float64),
                                                      positions)
    assert np.abs(out["sequence_output"].numpy() - ref_seq).max() < 1e-4
    assert np.abs(out["pooled_output"].numpy() - ref_pooled).max() < 1e-5
    assert np.abs(out["sentence_logits"].numpy() - ref_sop).max() < 1e-5
    assert np.abs(out["mlm_logits"].numpy() - ref_mlm).max() < 1e-4


def test_refusals_name_the_variable(tmp_path, capsys):
    cfg = {**BASE, "num_hidden_layers": 2}
    prefix, _ = write_release(tmp_path, release_variables("google_bert", 2))
    raw = dict(cfg)
    with pytest.raises(ic.ImportRefused, match=r"bert/encoder/layer_0/intermediate/dense/kernel: checkpoint shape "
                                               r"\[16, 32\] does not match the config's \[16, 48\]"):
        ic.import_checkpoint(prefix, {**raw, "intermediate_size": 48}, "albert", "google_bert")
    with pytest.raises(ic.ImportRefused, match=r"bert/embeddings/word_embeddings: checkpoint shape \[40, 16\] does "
                                               r"not match the config's \[50, 16\]"):
        ic.import_checkpoint(prefix, {**raw, "vocab_size": 50}, "albert", "google_bert")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(f"t{i}\n" for i in range(36)) + "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", encoding="utf-8")
    with pytest.raises(ic.ImportRefused, match="has 41 tokens but bert/embeddings/word_embeddings has 40 rows"):
        ic.import_checkpoint(prefix, raw, "albert", "google_bert", vocab_file=str(vocab))
    with pytest.raises(ic.ImportRefused, match="imports into --model albert, not nezha"):
        ic.import_checkpoint(prefix, raw, "nezha", "google_bert")
    with pytest.raises(ic.ImportRefused, match="has no bert/embeddings/word_embeddings_2"):
        ic.import_checkpoint(prefix, {**raw, "embedding_size": H}, "albert", "albert_zh")  # a BERT file is no albert_zh
    (tmp_path / "c.json").write_text(json.dumps({**raw, "num_hidden_layers": 3}), encoding="utf-8")
    assert ic.main(["--checkpoint", prefix, "--config", str(tmp_path / "c.json"), "--model", "albert", "--flavour",
                    "google_bert", "--output", str(tmp_path / "o")]) == 2
    assert "checkpoint" in capsys.readouterr().err and not (tmp_path / "o").exists()
    # A missing head variable is reported (kept at init); a missing encoder variable is refused.
    sub = tmp_path / "partial"
    sub.mkdir()
    p2, _ = write_release(sub, release_variables("google_bert", 2), drop=("cls/seq_relationship/output_bias",))
    _, report = ic.import_checkpoint(p2, raw, "albert", "google_bert")
    assert report["missing"] == [{"name": "cls/seq_relationship/output_bias",
                                  "target": "albert_pretraining/sentence_head/bias", "kept": "initial value"}]
    sub2 = tmp_path / "partial2"
    sub2.mkdir()
    p3, _ = write_release(sub2, release_variables("google_bert", 2), drop=("bert/encoder/layer_1/output/dense/bias",))
    with pytest.raises(ic.ImportRefused, match="has no bert/encoder/layer_1/output/dense/bias"):
        ic.import_checkpoint(p3, raw, "albert", "google_bert")


def test_pretrain_continues_from_an_imported_checkpoint(tmp_path, capsys):
    """``pretrain --init_checkpoint RUN_DIR`` starts from the imported weights with a fresh optimizer at step 0
    (a zero learning rate leaves them untouched, so ckpt-2 holds exactly the release's values)."""
    from trainer_hooks import pretrain
    from trainer_hooks.synthetic import write_dataset
    manifest = write_dataset(str(tmp_path / "data"), num_shards=1, per_shard=8, vocab_size=V)
    cfg = {**BASE, "num_hidden_layers": 2, "embedding_size": E, "num_hidden_groups": 1, "inner_group_num": 1,
           "max_position_embeddings": manifest["tfrecords"]["max_seq_length"]}
    names = release_variables("google_albert", 2)
    names["bert/embeddings/position_embeddings"] = (cfg["max_position_embeddings"], E)
    prefix, values = write_release(tmp_path, names)
    (tmp_path / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    imported = tmp_path / "imported"
    assert ic.main(["--checkpoint", prefix, "--config", str(tmp_path / "config.json"), "--model", "albert",
                    "--flavour", "google_albert", "--output", str(imported)]) == 0
    run = tmp_path / "run"
    args = ["--input", str(tmp_path / "data" / "tfrecords" / "*"),
            "--manifest", str(tmp_path / "data" / "manifest.json"),
            "--model", "albert", "--config", str(imported / "model_config.json"), "--model_dir", str(run),
            "--num_train_steps", "2", "--train_batch_size", "2", "--optimizer", "adamw", "--learning_rate", "0",
            "--init_checkpoint", str(imported)]
    assert pretrain.main(args) == 0
    assert f"model initialised from {imported / 'ckpt-0'} (optimizer fresh, step 0)" in capsys.readouterr().err
    # Model-only restore of the trainer's ckpt-2 (what export and finetune do) gives the release's weights.
    spec = finetune.resolve_init(str(run), "albert", None)
    assert spec["checkpoint"] == str(run / "ckpt-2")
    model = finetune.load_encoder("albert", spec, "float32", seed=3)
    block = model.encoder.attention_blocks[0]
    np.testing.assert_array_equal(block.query.kernel.numpy(), values[
        "bert/encoder/transformer/group_0/inner_group_0/attention_1/self/query/kernel"])
    np.testing.assert_array_equal(model.encoder.ffn_blocks[0].layer_norm.gamma.numpy(), values[
        "bert/encoder/transformer/group_0/inner_group_0/LayerNorm_1/gamma"])
    assert int(tf.train.load_checkpoint(str(run / "ckpt-2")).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == 2
    # A checkpoint of another shape is refused before training, naming the mismatch.
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**cfg, "intermediate_size": 48}), encoding="utf-8")
    assert pretrain.main([*args[:7], str(bad), "--model_dir", str(tmp_path / "run2"), *args[10:]]) == 2
    err = capsys.readouterr().err
    assert f"--init_checkpoint {imported / 'ckpt-0'} does not fit --model/--config: model/encoder/ffn_blocks_0/" \
           "intermediate/_kernel has shape [16, 32] in the checkpoint but [16, 48] in the config (and 2 more)" in err


def write_bert_release(path: Path, vocab_file: str, max_position: int) -> str:
    """A tiny checkpoint in Google BERT's naming with a real vocab (``bert_model.ckpt``, ``bert_config.json``,
    ``vocab.txt``), as the release directory is laid out; used by the README's worked example test."""
    import shutil
    from corpusflow.tokenize.wordpiece import load_vocab
    path.mkdir(parents=True)
    vocab = len(load_vocab(vocab_file))
    cfg = {**BASE, "vocab_size": vocab, "max_position_embeddings": max_position, "num_hidden_layers": 2}
    names = release_variables("google_bert", 2)
    names.update({"bert/embeddings/word_embeddings": (vocab, H),
                  "bert/embeddings/position_embeddings": (max_position, H), "cls/predictions/output_bias": (vocab,)})
    prefix, _ = write_release(path, names)
    for ext in (".index", ".data-00000-of-00001"):
        shutil.move(prefix + ext, str(path / "bert_model.ckpt") + ext)
    (path / "bert_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    shutil.copyfile(vocab_file, path / "vocab.txt")
    return str(path / "bert_model.ckpt")


def test_albert_zh_layout_parameter_count_and_hf_refusal():
    from trainer_hooks.config import ModelConfig
    from trainer_hooks.convert_hf import ConversionRefused, albert_state_dict
    from trainer_hooks.models import build_model
    from trainer_hooks.models.albert import albert_parameter_count
    for share in ("all", "none"):
        cfg = ic.model_config({**BASE, "num_hidden_layers": 2, "embedding_size": E}, "albert_zh",
                              ["bert/encoder/layer_shared/intermediate/dense/kernel"] if share == "all" else [])
        assert cfg.albert_share_type == share and cfg.extra["embedding_layout"] == "albert_zh"
        model = build_model("albert", cfg)
        assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == albert_parameter_count(cfg)
        assert tuple(model.encoder.position_embeddings.shape) == (P, H) and model.encoder.embedding_projection.bias \
            is None
    with pytest.raises(ConversionRefused, match="embedding_layout albert_zh"):
        albert_state_dict(model)
    with pytest.raises(ValueError, match="embedding_layout must be one of"):
        build_model("albert", ModelConfig.from_dict({**BASE, "num_hidden_layers": 1, "embedding_layout": "x"}))
