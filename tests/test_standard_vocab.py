"""The standard Chinese BERT vocab (bundled as ``DEFAULT_VOCAB``) is read and
used the way BERT and Hugging Face do: ids are line numbers, and the pipeline's
WordPiece ids equal Hugging Face's on real text, never emitting ``[unusedN]``,
``##`` + a CJK ideograph or a whitespace entry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from corpusflow.pretrain.masking import replacement_ids
from corpusflow.tokenize import DEFAULT_VOCAB
from corpusflow.tokenize import agreement as ag
from corpusflow.tokenize.wordpiece import FullTokenizer, is_chinese_char, load_vocab

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
GOOGLE = SHARED / "anchors" / "google_bert" / "tokenization.py"
EDGE_LINES = REPO / "tests" / "data" / "tokenizer_edge_lines.jsonl"
SAMPLE = REPO / "data" / "sample"

# Made-up strings for the rules real text rarely hits. For each, Hugging Face is
# the expected behaviour (see corpusflow.tokenize.wordpiece for where Google's
# code differs: final sigma, private-use characters, 101-200 character words).
CONSTRUCTED = [
    "line\u2028break 段落\u2029分隔", "tab\tand\x0bvt\x0cff\x85nel", "soft\u00adhyphen zero\u200bwidth",
    "私用\ue000区x\uf0d8y", "unassigned\U000e0080here", "ΟΔΟΣ Σ", "a" * 150, "b" * 100, "中\u0301文 é",
    "ＡＢＣ１２３ｘｙｚ", "İstanbul STRASSE straße ﬁnance ǅemal", "emoji 👍🏻 ❤️ 1️⃣", "株式会社ｶﾀｶﾅ ①②③ Ⅻ",
    "1,234.56% $5 #tag @user ^_^", "𠀀𪚥 ext 𫫇 \u3400 \uf900", "iPhone6s unaffable hello你好world",
]


@pytest.fixture(scope="module")
def tok() -> FullTokenizer:
    return FullTokenizer(DEFAULT_VOCAB)


@pytest.fixture(scope="module")
def hf() -> ag.Encoder:
    pytest.importorskip("tokenizers")
    return ag.hf_tokenizers_encoder(DEFAULT_VOCAB)


def _lines() -> list[str]:
    data = Path(DEFAULT_VOCAB).read_bytes()
    assert data.endswith(b"\n")
    return [x.decode("utf-8") for x in data[:-1].split(b"\n")]


def test_bundled_vocab_keeps_line_numbers(tok):
    """Lines 344 (U+2028) and 13,503 (## + U+2028) keep their ids; the old
    loader (str.strip per line) refused the file."""
    data = Path(DEFAULT_VOCAB).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert digest.startswith("45bbac6b") and digest.endswith("291c")  # shared/vocab/README.md
    lines = _lines()
    assert len(lines) == len(tok) == 21128
    assert tok.vocab == {t: i for i, t in enumerate(lines)}
    assert tok.vocab["\u2028"] == 343 and tok.vocab["##\u2028"] == 13502
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    assert tok.inv_vocab[344] == lines[344] and tok.inv_vocab[13503] == lines[13503]
    # vocab.audit reads it the same way.
    from vocab.audit import load_vocab as audit_load

    assert audit_load(DEFAULT_VOCAB).tokens == lines
    if (SHARED / "vocab" / "bert_base_chinese_vocab.txt").exists():
        assert (SHARED / "vocab" / "bert_base_chinese_vocab.txt").read_bytes() == data


def test_same_ids_as_hf_vocab_readers():
    """transformers' reader gives exactly our mapping; tokenizers' Rust reader
    trims line ends, so it differs only in the strings at ids 343 and 13,502."""
    tokenizers = pytest.importorskip("tokenizers")
    ours = load_vocab(DEFAULT_VOCAB)
    rust = tokenizers.models.WordPiece.read_file(DEFAULT_VOCAB)
    assert len(rust) == len(ours)
    assert {t: i for t, i in rust.items() if i not in (343, 13502)} == \
        {t: i for t, i in ours.items() if i not in (343, 13502)}
    assert rust[""] == 343 and rust["##"] == 13502
    transformers = pytest.importorskip("transformers")
    assert dict(transformers.models.bert.tokenization_bert.load_vocab(DEFAULT_VOCAB)) == ours


def _sample_units() -> list[ag.Unit]:
    units: list[ag.Unit] = []
    for path in sorted(SAMPLE.glob("*.jsonl")) + sorted(SAMPLE.glob("*.txt")) + [EDGE_LINES]:
        units += ag.file_units(str(path), path.name)
    return units + [ag.Unit("constructed", i + 1, t) for i, t in enumerate(CONSTRUCTED)]


def _assert_clean(tok: FullTokenizer, ids_lists: list[list[int]]) -> int:
    forbidden = ag.forbidden_ids(tok.inv_vocab)
    bad = set().union(*forbidden.values())
    n = 0
    for ids in ids_lists:
        assert not bad.intersection(ids), [tok.inv_vocab[i] for i in bad.intersection(ids)]
        n += len(ids)
    return n


def test_agrees_with_hf_on_committed_sample(tok, hf):
    """Every unit of the committed real text (data/sample, tests/data) and the
    constructed strings: same ids as tokenizers' BertWordPieceTokenizer, as read
    and as the instances stage sees it (cleaned, split into sentences)."""
    units = _sample_units()
    assert len(units) >= 400
    ours = ag.ours_encoder(DEFAULT_VOCAB)
    for view in (None, ag.PipelineView()):
        res = ag.compare(units, ours, {"tokenizers": hf}, view, inv_vocab=tok.inv_vocab)["tokenizers"]
        assert res.agree == res.units == len(units), res.differences[:3]
        texts = [view(u.text) if view else u.text for u in units]
        assert _assert_clean(tok, ours(texts)) == res.tokens > 150_000


def test_agrees_with_google_except_documented_differences(tok):
    """Google's tokenization.py (the reference) gives the same ids on the
    committed sample; on the constructed strings it differs exactly where
    Hugging Face does (final sigma, private use, 101-200 character words)."""
    if not GOOGLE.exists():
        pytest.skip(f"{GOOGLE} not present")
    google = ag.google_encoder(str(GOOGLE), DEFAULT_VOCAB)
    ours = ag.ours_encoder(DEFAULT_VOCAB)
    units = [u for u in _sample_units() if u.file != "constructed"]
    res = ag.compare(units, ours, {"google": google})["google"]
    assert res.agree == res.units
    mine, ref = ours(CONSTRUCTED), google(CONSTRUCTED)
    differ = [t for t, a, b in zip(CONSTRUCTED, mine, ref) if a != b]
    assert differ == ["私用\ue000区x\uf0d8y", "ΟΔΟΣ Σ", "a" * 150]


def test_no_cjk_continuation_for_any_cjk_entry(tok, hf):
    """Every CJK ideograph of the vocab, glued to its neighbours and to Latin
    letters, comes out as its own plain id: BERT never produces ``##中``."""
    cjk = [t for t in tok.vocab if len(t) == 1 and is_chinese_char(ord(t))]
    assert len(cjk) == 7322  # each also has its ## form in this vocab
    texts = ["".join(cjk), "a".join(cjk), "x" + "1".join(cjk) + "y"]
    ids = ag.ours_encoder(DEFAULT_VOCAB)(texts)
    assert ids[0] == [tok.vocab[c] for c in cjk]
    assert ids == hf(texts)
    _assert_clean(tok, ids)


def test_replacement_ids_skip_unproducible_entries(tok):
    """Random MLM replacements never draw [unusedN], ##-pieces (##CJK
    included) or the whitespace entries of the standard vocab."""
    forbidden = ag.forbidden_ids(tok.inv_vocab)
    assert {k: len(v) for k, v in forbidden.items()} == {"unused": 99, "cjk_continuation": 7322, "whitespace": 2}
    ids = replacement_ids(tok.vocab)
    assert not set(ids) & set().union(*forbidden.values())
    assert 343 not in ids and len(ids) == 11409  # 21128 - 104 [..] entries - 9614 ## pieces - U+2028
    # Every replacement is something the tokenizer can produce from its own text.
    assert all(tok.tokenize_ids(tok.inv_vocab[i]) == [i] for i in ids if tok.inv_vocab[i].islower()
               or is_chinese_char(ord(tok.inv_vocab[i][0])))


def test_agrees_with_hf_on_shared_corpus(tok, hf):
    """Every fourth text unit of ../shared/corpus (all files, all formats;
    sampled to keep this test to seconds; bench/tokenizer_agreement.py runs
    every unit), as read: same ids as Hugging Face, and none forbidden."""
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} not present")
    units = [u for k, u in enumerate(ag.corpus_units(str(CORPUS))) if k % 4 == 0]
    assert len(units) > 5000
    res = ag.compare(units, ag.ours_encoder(DEFAULT_VOCAB), {"tokenizers": hf})["tokenizers"]
    assert res.agree == res.units, json.dumps(res.differences[:3], ensure_ascii=False)
    assert res.tokens > 500_000
