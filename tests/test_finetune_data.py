"""Fine-tuning input (issue 17 item 1): readers, label map, bad input, and tokenisation that is the pipeline's own
cleaning + WordPiece. No TensorFlow needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from corpusflow.clean import normalize
from corpusflow.counters import CounterDict, null_inc
from corpusflow.tokenize import DEFAULT_VOCAB
from corpusflow.tokenize.wordpiece import FullTokenizer
from trainer_hooks import finetune_data as fd


def write(path, lines):
    path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    return str(path)


def test_clue_json_skips_and_counts_dash_labels(tmp_path):
    rows = [{"sentence1": "他在吃饭", "sentence2": "他饿了", "label": "entailment"},
            {"sentence1": "天很蓝", "sentence2": "下雨了", "label": "-"},
            {"sentence1": "猫在睡觉", "sentence2": "猫醒着", "label": "contradiction"}]
    path = write(tmp_path / "dev.json", [json.dumps(r, ensure_ascii=False) for r in rows] + [""])
    counts = CounterDict()
    assert fd.detect_format(path) == "clue_json"
    got = fd.read_rows(path, "auto", "pair", counts)
    assert [(r.text_a, r.text_b, r.label, r.line) for r in got] == [
        ("他在吃饭", "他饿了", "entailment", 1), ("猫在睡觉", "猫醒着", "contradiction", 3)]
    assert counts.as_dict() == {"finetune:skipped:no_gold_label": 1}
    with pytest.raises(fd.DataError, match="needs 'sentence'"):
        fd.read_rows(path, "clue_json", "classify", CounterDict())


def test_tsv_readers_header_and_field_errors(tmp_path):
    lc = write(tmp_path / "lcqmc.tsv", ["text_a\ttext_b\tlabel", "喜欢打篮球的男生喜欢什么样的女生\t爱打篮球的男生喜欢什么样的女生\t1",
                                        "我手机丢了\t我想换个手机\t0"])
    counts = CounterDict()
    assert fd.detect_format(lc) == "lcqmc_tsv"
    rows = fd.read_rows(lc, "auto", "pair", counts)
    assert [(r.label, r.line) for r in rows] == [("1", 2), ("0", 3)] and rows[1].text_b == "我想换个手机"
    assert counts.as_dict() == {"finetune:skipped:header": 1}
    news = write(tmp_path / "news.tsv", ["体育\t马晓旭意外受伤让国奥警惕", "财经\t基金净值上涨"])
    assert [(r.label, r.text_a, r.text_b) for r in fd.read_rows(news, "auto", "classify", CounterDict())] == [
        ("体育", "马晓旭意外受伤让国奥警惕", None), ("财经", "基金净值上涨", None)]
    with pytest.raises(fd.DataError, match="use --task classify"):
        fd.read_rows(news, "auto", "pair", CounterDict())
    bad = write(tmp_path / "bad.tsv", ["a\tb\t1", "only two\t0"])
    with pytest.raises(fd.DataError, match=r"bad.tsv:2: 2 tab-separated fields, lcqmc_tsv has 3"):
        fd.read_rows(bad, "auto", "pair", CounterDict())


def test_labels_sorted_and_unseen_dev_labels_refused(tmp_path):
    train = [fd.Row("a", None, lab, i) for i, lab in enumerate(["10", "2", "1", "2"], 1)]
    assert fd.build_labels(train) == ["1", "2", "10"]
    dev = [fd.Row("a", None, "1", 1), fd.Row("b", None, "7", 2), fd.Row("c", None, "7", 5)]
    with pytest.raises(fd.DataError, match=r"dev.tsv: labels not in the training set \['1', '10', '2'\]: "
                                           r"'7' \(2 rows, first at line 2\)"):
        fd.check_labels(dev, fd.build_labels(train), "dev.tsv")
    fd.write_labels(["体育", "财经"], tmp_path / "labels.txt")
    assert (tmp_path / "labels.txt").read_text(encoding="utf-8") == "体育\n财经\n"
    assert fd.read_labels(tmp_path / "labels.txt") == ["体育", "财经"]


def test_text_is_cleaned_and_tokenised_like_pretraining_text():
    enc = fd.TextEncoder(DEFAULT_VOCAB, 32, do_lower_case=True, t2s=True)
    raw = "ＡＢＣ&amp;這個<b>國家</b>　很好"
    cleaned = normalize.normalize(raw, null_inc, normalize.load_t2s())
    tok = FullTokenizer(DEFAULT_VOCAB, do_lower_case=True)
    assert enc.clean(raw) == cleaned == "ABC&这个国家 很好"
    assert enc.ids(raw) == tok.tokenize_ids(cleaned) == tok.convert_tokens_to_ids(
        ["abc", "&", "这", "个", "国", "家", "很", "好"])
    ids, segs, cut = enc.encode("你好", "再见")
    cls, sep = tok.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    assert ids == [cls] + tok.convert_tokens_to_ids(["你", "好"]) + [sep] + tok.convert_tokens_to_ids(["再", "见"]) \
        + [sep] and segs == [0, 0, 0, 0, 1, 1, 1] and not cut


def test_long_pairs_truncated_like_pretraining_and_empty_rows_counted():
    enc = fd.TextEncoder(DEFAULT_VOCAB, 10, t2s=False)
    # budget 10 - 3 = 7 tokens: the longer side loses tokens until the pair fits (a: 8 -> 4, b: 4 -> 3).
    ids, segs, cut = enc.encode("一二三四五六七八", "甲乙丙丁")
    assert cut and len(ids) == 10 and segs == [0] * 6 + [1] * 4
    assert enc.tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "一", "二", "三", "四", "[SEP]", "甲", "乙", "丙",
                                                         "[SEP]"]
    rows = [fd.Row("一二三四五六七八", "甲乙丙丁", "1", 1), fd.Row("  ", "甲", "0", 2), fd.Row("好", "坏", "0", 3),
            fd.Row("<br>", "坏", "1", 4)]
    counts = CounterDict()
    out = fd.encode_rows(rows, enc, ["0", "1"], counts)
    assert counts.as_dict() == {"finetune:kept": 2, "finetune:skipped:empty_sentence": 2,
                                "finetune:truncated:long": 1}
    assert out.lines.tolist() == [1, 3] and out.labels.tolist() == [1, 0]
    assert out.input_mask.sum(1).tolist() == [10, 5] and out.input_ids.shape == (2, 10)


def test_metrics_accuracy_and_macro_f1():
    gold = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    m = fd.classification_metrics(gold, pred, 4)
    # F1: label 0: tp1 fp1 fn1 -> 0.5; label 1: tp2 fp1 fn0 -> 0.8; label 2: 0; label 3 absent everywhere.
    assert m["accuracy"] == pytest.approx(0.6) and m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_help_shows_every_default():
    from trainer_hooks import cli, finetune, import_checkpoint
    for parser in (finetune.build_parser(), finetune.build_predict_parser(), import_checkpoint.build_parser()):
        assert cli.undocumented_defaults(parser) == [], parser.prog
