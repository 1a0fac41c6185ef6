"""Plumbing of bench/data_value.py: the raw split, token counts, MLM scoring, the FLOPs estimate, comparisons."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench.data_value_report import compare
from bench.data_value_split import SplitError, corpus_files, is_heldout, split_corpus
from corpusflow.document import Document
from corpusflow.io.readers import read_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED, SHARE = 7, 0.3

# Distinct sentences (no 13-character run in common between any two).
TEXTS = ["天津市今年新建了十二座公园，市民周末可以带着孩子去散步。", "这家工厂去年的产量比前年增加了百分之三十以上。",
         "研究人员在南极冰层下面发现了一种从未见过的细菌。", "他每天早上六点起床，先跑五公里再去公司上班。",
         "图书馆新到了一批关于宋代历史和瓷器的专业书籍。", "小明把自行车停在楼下，结果第二天就被人偷走了。",
         "这座桥全长八百米，是当地第一座跨江的斜拉桥梁。", "医生建议老年人冬天少吃腌制食品，多喝温开水。",
         "足球队在最后一分钟打进一球，以二比一战胜对手。", "新修订的条例将从明年一月一日起在全省范围施行。",
         "她用了整整三年时间，把外婆的旧照片全部扫描存档。", "山里的小学终于通了网络，孩子们第一次上了网课。"]
# One held-out article also appears under another id, in Traditional script (must not stay in training).
SIMPLIFIED = "国务院办公厅发布通知要求各地加强对农村饮用水水源地的保护工作"
TRADITIONAL = "國務院辦公廳發佈通知要求各地加強對農村飲用水水源地的保護工作"


def _ids(prefix: str, want_heldout: bool, n: int) -> list[str]:
    """The first ``n`` ids ``prefix0, prefix1, ...`` on the wanted side of the seeded split."""
    out, i = [], 0
    while len(out) < n:
        if is_heldout(f"wiki:{prefix}{i}", SEED, SHARE) == want_heldout:
            out.append(f"{prefix}{i}")
        i += 1
    return out


@pytest.fixture()
def corpus(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    with open(root / "wiki.jsonl", "w", encoding="utf-8") as f:
        for i, t in enumerate(TEXTS[:8]):
            f.write(json.dumps({"id": f"a{i}", "title": "", "text": t}, ensure_ascii=False) + "\n")
        f.write(json.dumps({"id": "empty", "title": "", "text": "  "}) + "\n")  # a reader reject
        held = _ids("news", True, 1)[0]
        f.write(json.dumps({"id": held, "title": "", "text": SIMPLIFIED}, ensure_ascii=False) + "\n")
        kept = _ids("copy", False, 1)[0]
        f.write(json.dumps({"id": kept, "title": "", "text": TRADITIONAL}, ensure_ascii=False) + "\n")
    # Plain text, one document a line, in GB18030: the reader decodes it; the copies are UTF-8.
    (root / "sub" / "lines.txt").write_bytes(("\n".join(TEXTS[8:]) + "\n").encode("gb18030"))
    (root / "README.md").write_text("not a document", encoding="utf-8")
    return root, f"wiki:{held}", f"wiki:{kept}"


def _docs(path: str) -> list[Document]:
    return [r for r in read_file(path) if isinstance(r, Document)]


def test_split_is_by_id_decontaminated_and_reads_back(corpus, tmp_path):
    root, held_id, copy_id = corpus
    assert [os.path.basename(p) for p in corpus_files(str(root))] == ["lines.txt", "wiki.jsonl"]
    train, held = str(tmp_path / "t" / "docs.jsonl"), str(tmp_path / "h" / "docs.jsonl")
    st = split_corpus(str(root), train, held, SHARE, SEED)
    originals = [d for p in corpus_files(str(root)) for d in _docs(p)]
    assert (st.files, st.documents, st.reader_rejects) == (2, 14, 1)
    want_held = [d for d in originals if is_heldout(d.id, SEED, SHARE)]
    got_held, got_train = _docs(held), _docs(train)
    # Written as wiki_json: the id gains the "wiki:" namespace, the text is byte-for-byte the reader's.
    assert [(d.id, d.text) for d in got_held] == [(f"wiki:{d.id}", d.text) for d in want_held]
    assert held_id in {d.id for d in want_held}
    # The Traditional copy of a held-out article is not in training, and is the one document left out.
    assert st.decontaminated == 1 and copy_id not in {d.id[len("wiki:"):] for d in got_train}
    assert st.heldout + st.train + st.decontaminated == st.documents
    assert len(got_held) == st.heldout and len(got_train) == st.train
    assert sorted(d.text for d in got_train + got_held) == sorted(d.text for d in originals if d.text != TRADITIONAL)
    assert st.train_chars == sum(len(d.text) for d in got_train)
    # Deterministic: the same split again gives identical files.
    before = open(train, "rb").read(), open(held, "rb").read()
    split_corpus(str(root), train, held, SHARE, SEED)
    assert (open(train, "rb").read(), open(held, "rb").read()) == before
    # Without decontamination the copy stays.
    st2 = split_corpus(str(root), train, held, SHARE, SEED, decontaminate=False)
    assert st2.decontaminated == 0 and st2.train == st.train + 1


def test_split_refuses_bad_input(tmp_path, corpus):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SplitError, match="no input files"):
        split_corpus(str(tmp_path / "empty"), str(tmp_path / "a"), str(tmp_path / "b"), 0.1, 1)
    with pytest.raises(SplitError, match="heldout_share"):
        split_corpus(str(corpus[0]), str(tmp_path / "a"), str(tmp_path / "b"), 1.0, 1)


def test_cli_refuses_missing_corpus_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "data_value.py"), "--corpus",
                        str(tmp_path / "nope"), "--work", str(tmp_path / "w")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == f"data_value: {tmp_path / 'nope'} does not exist"


def _ft(accs):
    return [{"last_epoch_accuracy": a, "best_epoch_accuracy": a} for a in accs]


def _mlm(acc, se):
    return {"mlm": {"mlm_accuracy": acc, "mlm_accuracy_se": se, "mlm_loss": 1.0}}


def test_compare_spread_rules():
    out = {"pretrain": {"default": [_mlm(0.30, 0.002)], "plain": [_mlm(0.29, 0.002)]},
           "ocnli": {"random": _ft([0.33, 0.35, 0.34]), "default": _ft([0.40, 0.42, 0.41]),
                     "plain": _ft([0.39, 0.41, 0.43])}}
    rows = {(r["a"], r["b"]): r for r in compare(out, ("default", "plain"))}
    assert set(rows) == {("default", "plain"), ("default", "random"), ("plain", "random")}
    m = rows[("default", "plain")]["mlm"]
    assert m["diff"] == pytest.approx(0.01) and m["se"] == pytest.approx(np.sqrt(2) * 0.002)
    assert m["exceeds_2se"]  # 0.01 > 2 * 0.00283
    o = rows[("default", "plain")]["ocnli"]
    assert o["diff"] == pytest.approx(0.0) and not o["exceeds_seed_spread"]  # the runs overlap
    o = rows[("default", "random")]["ocnli"]
    assert o["diff"] == pytest.approx(0.07) and o["exceeds_seed_spread"]  # 0.40 > 0.35
    assert o["z"] == pytest.approx(0.07 / np.sqrt(2 * 0.01 ** 2 / 3))


def test_tokens_mlm_accuracy_and_flops(tmp_path):
    from bench.data_value_mlm import forward_flops, mlm_accuracy, replay_tokens, shard_tokens
    from trainer_hooks import data
    from trainer_hooks.config import ModelConfig
    from trainer_hooks.models import build_model
    from trainer_hooks.pretrain import tf
    from trainer_hooks.synthetic import tiny_config, write_dataset

    build = str(tmp_path / "build")
    write_dataset(build, num_shards=2, per_shard=9, max_seq_length=16, max_predictions_per_seq=4, seed=3)
    manifest = data.load_manifest(os.path.join(build, "manifest.json"))
    recs = [tf.io.parse_single_example(r, data.parsing_features(manifest))
            for s in manifest.shards for r in tf.data.TFRecordDataset(s.path)]
    tokens = sum(int(np.sum(r["input_mask"])) for r in recs)
    st = shard_tokens(build)
    assert (st["instances"], st["tokens"]) == (18, tokens)
    # One epoch exactly (6 batches of 3) reads every token once; fewer steps read fewer.
    assert replay_tokens(build, 6, 3, seed=5) == tokens
    assert 0 < replay_tokens(build, 2, 3, seed=5) < tokens

    cfg = ModelConfig.from_dict(tiny_config("albert"))
    model = build_model("albert", cfg, seed=11, max_predictions_per_seq=4)
    run = str(tmp_path / "run")
    os.makedirs(run)
    cfg.to_json_file(os.path.join(run, "model_config.json"))
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), run, max_to_keep=1).save(checkpoint_number=4)
    hits = weight = loss = 0.0
    for r in recs:
        logits = model({k: v[None] for k, v in r.items()}, training=False)["mlm_logits"].numpy()[0].astype(np.float64)
        w, ids = r["masked_lm_weights"].numpy(), r["masked_lm_ids"].numpy()
        hits += float(np.sum((logits.argmax(-1) == ids) * w))
        logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        loss += float(np.sum((logz - logits[np.arange(len(ids)), ids]) * w))
        weight += float(np.sum(w))
    got = mlm_accuracy(run, "albert", build, batch=4)  # 18 records: the last batch is short, and still counted
    assert got["instances"] == 18 and got["masked"] == int(weight)
    assert got["mlm_accuracy"] == pytest.approx(hits / weight)
    assert got["mlm_loss"] == pytest.approx(loss / weight, rel=1e-4) and loss / weight > 3.0  # ~ln(40): untrained
    assert got["mlm_accuracy_se"] == pytest.approx(np.sqrt(hits / weight * (1 - hits / weight) / weight))
    assert got["checkpoint"].endswith("ckpt-4")

    # 2 layers x (4 H^2 + 2 H I + 2 S H) per token, E->H, and the head (H E + E V) on the predictions.
    h, i, e, v, s, p = 32, 64, 16, 40, 16, 4
    want = 2 * (s * (2 * (4 * h * h + 2 * h * i + 2 * s * h) + e * h) + p * (h * e + e * v))
    assert forward_flops(cfg, s, p) == want
