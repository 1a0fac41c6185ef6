"""vocab.build keeps the PII placeholders (corpusflow.pii.PLACEHOLDERS) whole."""

from __future__ import annotations

import gzip
import json

import sentencepiece as spm

from corpusflow.tokenize.wordpiece import FullTokenizer
from vocab.build import build_vocab

TEXTS = ["请拨打[mobile]联系我们，或发邮件到[email]。", "我的身份证号是[id]，手机[mobile]。",
         "北京是中国的首都。", "上海是一座国际化大都市。", "广州的早茶很有名。"] * 20 + [
            f"第{i}次会议在{c}召开，讨论了{i * 7}个议题。" for i in range(300) for c in ("北京", "深圳")]


def _docs(tmp_path, texts):
    p = tmp_path / "d.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"t:{i}", "source": "text", "title": "", "text": t}, ensure_ascii=False) + "\n")
    return str(p)


def test_placeholder_names_are_whole_entries_after_the_specials(tmp_path):
    out = tmp_path / "v"
    build_vocab(_docs(tmp_path, TEXTS), str(out), 120, kind="both", num_unused=0, allow_smaller=True,
                progress=False)
    lines = (out / "vocab.txt").read_text(encoding="utf-8").split("\n")
    # [PAD] [UNK] [CLS] [SEP] [MASK], then the three placeholder names seen, in PLACEHOLDERS order.
    assert lines[:8] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "id", "mobile", "email"]
    tok = FullTokenizer(str(out / "vocab.txt"))
    assert tok.tokenize("手机[mobile]，邮件[email]，身份证[id]") == [
        "手", "机", "[", "mobile", "]", "，", "邮", "件", "[", "email", "]", "，", "身", "份", "证", "[", "id", "]"]
    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    pieces = sp.encode("手机[mobile]", out_type=str)
    assert "[mobile]" in pieces  # one whole sentencepiece piece


def test_no_placeholders_no_change(tmp_path):
    plain = [t for t in TEXTS if "[" not in t]
    out = tmp_path / "v"
    build_vocab(_docs(tmp_path, plain), str(out), 60, kind="wordpiece", num_unused=0, allow_smaller=True,
                progress=False)
    lines = (out / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert lines[:6] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "。"]
    assert not {"id", "mobile", "email"} & set(lines)
