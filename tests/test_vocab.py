"""Tests for vocab/: sampling, vocab.txt and sentencepiece building, the audit, errors."""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import random

import pytest

from vocab import audit as audit_mod
from vocab import build as build_mod
from vocab.audit import VocabError, audit_vocab, load_vocab
from vocab.build import VocabSizeError, build_vocab, special_tokens, wordpiece_vocab
from vocab.sample import CorpusError, reservoir_sample, sample_sentences, split_sentences
from vocab.wordpiece import KeyCounter, basic_tokenize, is_cjk, wordpiece_tokenize

CORPUS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
WIKI = CORPUS / "wiki" / "zhwiki_AA_wiki_00.jsonl"
SAMPLE_BYTES = 200_000  # ~70k characters, ~2,250 distinct: small enough to train in well under a second
SIZE = 2500  # fits the sample: every character plus some WordPiece pieces


def write_docs(path: pathlib.Path, texts: list[str]) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i, t in enumerate(texts):
            fh.write(json.dumps({"id": f"t:{i}", "source": "text", "title": "", "text": t},
                                ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def wiki_docs(tmp_path_factory) -> str:
    """~200 KB of real Chinese Wikipedia text as cleaned-docs .jsonl.gz (a glob)."""
    if not WIKI.exists():
        pytest.skip(f"{WIKI} not available")
    texts, n = [], 0
    for line in WIKI.open(encoding="utf-8"):
        if n > SAMPLE_BYTES:
            break
        t = json.loads(line)["text"]
        texts.append(t)
        n += len(t.encode("utf-8"))
    d = tmp_path_factory.mktemp("wiki")
    write_docs(d / "docs" / "part-0.jsonl.gz", texts)
    return str(d / "docs" / "*.jsonl.gz")


@pytest.fixture(scope="module")
def built(wiki_docs, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("built")
    build_vocab(wiki_docs, str(out), SIZE, kind="both", progress=False)
    return out


def doc_texts(glob_: str) -> list[str]:
    path = next(pathlib.Path("/").glob(glob_.lstrip("/")))
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


# -- sampling -----------------------------------------------------------------

def test_split_sentences():
    text = "他说：「你好。」然后走了！真的吗？是的；好\n\n第二段 Hello! ok"
    assert split_sentences(text) == ["他说：「你好。」", "然后走了！", "真的吗？", "是的；", "好",
                                     "第二段 Hello!", "ok"]
    assert split_sentences("一" * 4500) == ["一" * 2000, "一" * 2000, "一" * 500]


def test_reservoir_sample_is_seeded_uniform_and_bounded():
    a = reservoir_sample(range(10_000), 50, random.Random(3))
    assert a == reservoir_sample(range(10_000), 50, random.Random(3))
    assert a != reservoir_sample(range(10_000), 50, random.Random(4))
    assert a[1] == 10_000 and len(a[0]) == 50 and len(set(a[0])) == 50
    assert reservoir_sample(range(5), 10, random.Random(1)) == ([0, 1, 2, 3, 4], 5)
    hits = collections.Counter()
    for seed in range(2000):
        hits.update(reservoir_sample(range(40), 5, random.Random(seed))[0])
    # Each item is expected 250 times; 5 sigma is ~75.
    assert len(hits) == 40 and min(hits.values()) > 175 and max(hits.values()) < 325


def test_sample_sentences_counts_and_seed(tmp_path):
    g = str(write_docs(tmp_path / "d.jsonl.gz", ["一。二。三。", "四！五？\n六"]))
    s = sample_sentences(g, 100, progress=False)
    assert sorted(s.sentences) == sorted(["一。", "二。", "三。", "四！", "五？", "六"])
    assert (s.files, s.documents, s.sentences_seen) == (1, 2, 6)
    s1, s2 = (sample_sentences(g, 3, seed=1, progress=False) for _ in range(2))
    assert s1.sentences == s2.sentences and len(s1.sentences) == 3 and s1.sentences_seen == 6


def test_plain_jsonl_is_read(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(json.dumps({"id": "1", "text": "你好。"}, ensure_ascii=False) + "\n\n", encoding="utf-8")
    assert sample_sentences(str(p), 10, progress=False).sentences == ["你好。"]


# -- BERT rules mirror ----------------------------------------------------------

def test_key_counter_equals_basic_tokenizer():
    texts = ["naïve Café a\x1cb c\u2028d e\x85f 中\u0301 豈 full，。 ÀB\x00C \ufffd x\u00a0y",
             "我爱北京天安门。Hello, World! 2019年 ΟΔΟΣ \ue000x", "数学（mathematics）是……"]
    kc = KeyCounter()
    kc.add_all(texts)
    assert kc.words() == collections.Counter(w for t in texts for w in basic_tokenize(t))
    assert basic_tokenize("Hello,世界 Café") == ["hello", ",", "世", "界", "cafe"]
    # Fuzz: random mixes of the character kinds BERT treats differently.
    alphabet = "aZé́ß İ中豈𠮷，。!-_ \t\n\u3000\u2028\x00\x1c\x85\ufffd\ue000\u1fef\u200bｆ1ひ한"
    rng = random.Random(7)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 30))) for _ in range(300)]
    texts.append("a\ud800b，c")  # a lone surrogate, as a JSON escape can produce
    kc = KeyCounter()
    kc.add_all(texts)
    assert kc.words() == collections.Counter(w for t in texts for w in basic_tokenize(t))
    assert basic_tokenize("Café", do_lower_case=False) == ["Café"]


def test_wordpiece_tokenize_greedy():
    v = {"un", "##aff", "##able", "[UNK]", "a"}
    assert wordpiece_tokenize("unaffable", v) == ["un", "##aff", "##able"]
    assert wordpiece_tokenize("unaffablex", v) == ["[UNK]"]
    assert wordpiece_tokenize("a" * 101, v) == ["[UNK]"]


# -- vocab.txt and sentencepiece --------------------------------------------------

def test_special_token_layout(built):
    lines = (built / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) - 1 == SIZE
    assert lines[0] == "[PAD]"
    assert lines[1:100] == [f"[unused{i}]" for i in range(1, 100)]
    assert lines[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert not any(t.startswith("[") and t.endswith("]") for t in lines[104:])
    assert special_tokens(0) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(built / "spm.model"))
    assert sp.get_piece_size() == SIZE
    assert [sp.id_to_piece(i) for i in range(5)] == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert [sp.is_control(i) for i in (2, 3, 4)] == [True, True, True]
    assert (sp.bos_id(), sp.eos_id()) == (-1, -1)
    # identity normalisation: full-width Chinese punctuation survives.
    assert "，" in "".join(sp.encode("你好，世界", out_type=str))
    vocab_lines = (built / "spm.vocab").read_text(encoding="utf-8").splitlines()
    assert vocab_lines[0] == "<pad>\t0" and len(vocab_lines) == SIZE


def test_vocab_sections_in_order(built):
    entries = (built / "vocab.txt").read_text(encoding="utf-8").split("\n")[104:-1]
    assert entries[:2] == ["，", "。"]  # most frequent punctuation first
    kinds = ["cjk" if len(e) == 1 and is_cjk(e) else e for e in entries]
    first_cjk = kinds.index("cjk")
    last_cjk = len(kinds) - 1 - kinds[::-1].index("cjk")
    assert all(k == "cjk" for k in kinds[first_cjk:last_cjk + 1])
    assert any(e.startswith("##") and len(e) > 3 for e in entries[last_cjk:])  # learnt pieces
    assert len(set(entries)) == len(entries)


def test_deterministic_bytes(wiki_docs, built, tmp_path):
    again = tmp_path / "again"
    build_vocab(wiki_docs, str(again), SIZE, kind="both", progress=False)
    for name in ("vocab.txt", "spm.model", "spm.vocab", "audit.json"):
        assert (again / name).read_bytes() == (built / name).read_bytes(), name


def test_bpe_and_sample_seed(wiki_docs, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, seed in ((a, 1), (b, 1), (c, 2)):
        build_vocab(wiki_docs, str(d), 2000, kind="sentencepiece", model_type="bpe", sample_sentences=800,
                    seed=seed, progress=False)
    assert (a / "spm.model").read_bytes() == (b / "spm.model").read_bytes()
    assert (a / "spm.model").read_bytes() != (c / "spm.model").read_bytes()
    assert not (a / "vocab.txt").exists()


def test_coverage_of_sample(wiki_docs, built):
    audit = json.loads((built / "audit.json").read_text(encoding="utf-8"))
    wp, sp = audit["audits"]
    assert (wp["vocab"], sp["vocab"]) == ("vocab.txt", "spm.model")
    assert audit["corpus"]["sentences_sampled"] == audit["corpus"]["sentences_seen"]
    assert wp["character_coverage"] >= 0.999 and sp["character_coverage"] >= 0.999
    # The same, audited afresh over the documents rather than the build's sample.
    res = audit_vocab(str(built / "vocab.txt"), wiki_docs, progress=False)
    assert res["audits"][0]["character_coverage"] >= 0.999
    assert res["audits"][0]["characters"] == wp["characters"]


def test_tokenizer_round_trip(wiki_docs, built):
    wp = pytest.importorskip("corpusflow.tokenize.wordpiece")
    tok = wp.FullTokenizer(str(built / "vocab.txt"), do_lower_case=True)
    assert [tok.vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 100, 101, 102, 103]
    n_tokens = n_unk = 0
    for text in doc_texts(wiki_docs):
        tokens = tok.tokenize(text)
        n_tokens += len(tokens)
        n_unk += tokens.count("[UNK]")
        ids = tok.convert_tokens_to_ids(tokens)
        assert tok.convert_ids_to_tokens(ids) == tokens
        # Pieces put back together give the text as the tokenizer normalised it.
        assert "".join(t[2:] if t.startswith("##") else t for t in tokens) == "".join(basic_tokenize(text))
        # The audit's own BERT rules agree with the pipeline tokenizer.
        vocab = tok.vocab
        assert tokens == [p for w in basic_tokenize(text) for p in wordpiece_tokenize(w, vocab)]
    assert n_unk == 0
    audit = json.loads((built / "audit.json").read_text(encoding="utf-8"))["audits"][0]
    assert audit["unk_tokens"] == 0


def test_cjk_continuations_and_unused(wiki_docs, tmp_path):
    build_vocab(wiki_docs, str(tmp_path), 4700, kind="wordpiece", num_unused=0, cjk_continuations=True,
                allow_smaller=True, progress=False)
    entries = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split()
    assert entries[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    cjk = [e for e in entries if len(e) == 1 and 0x4E00 <= ord(e) <= 0x9FFF]
    tail = entries[-len(cjk):]
    assert tail == ["##" + c for c in cjk]


def test_learn_pieces_deterministic_on_ties():
    # tokenizers' trainer alone gives a different order on nearly every run here.
    words = {"hello": 50, "world": 40, "help": 30, "2019": 20, "bert": 20, "albert": 15, "wor": 7,
             "rtrt": 9, "erer": 9, "abab": 4, "baba": 4, "ひらがな": 2}
    runs = {tuple(build_mod.learn_pieces(words, 30, min_count=1)) for _ in range(10)}
    assert len(runs) == 1
    (pieces,) = runs
    assert len(pieces) == 30 and all(len(p.removeprefix("##")) > 1 for p in pieces)
    assert "hello" in pieces


def test_too_many_characters_drops_rarest():
    words = collections.Counter({"的": 9, "是": 5, "，": 7, "罕": 1, "ab": 3})
    entries = wordpiece_vocab(words, 5 + 4, num_unused=0)
    # budget 4 of 6 single entries (的 是 ， 罕 a ##b): the rarest go; on ties ## loses.
    assert entries[5:] == ["，", "的", "是", "a"]


# -- audit ------------------------------------------------------------------------

TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "我", "爱", "北", "京", "，", "。",
              "hello", "wor", "##ld", "##s"]
TINY_DOCS = ["我爱北京，天安门。\nHello worlds 𠮷 worldX", "天天\u3000我"]


def test_audit_numbers_exact_on_tiny_corpus(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    docs = write_docs(tmp_path / "docs" / "a.jsonl.gz", TINY_DOCS)
    out = tmp_path / "audit.json"
    res = audit_vocab(str(vocab), str(docs), output=str(out), progress=False)
    assert json.loads(out.read_text(encoding="utf-8")) == res
    assert res["corpus"] == {"docs": [str(docs)], "files": 1, "documents": 2}
    a = res["audits"][0]
    # Words: 我 爱 北 京 ， 天 安 门 。 | hello | worlds -> wor ##ld ##s | 𠮷 | worldx -> [UNK] | 天 天 我
    assert a["characters"] == 5 + 3 + 1 + 5 + 6 + 1 + 6 + 3 == 30
    assert a["tokens"] == 5 + 3 + 1 + 1 + 3 + 1 + 1 + 3 == 18
    assert a["unk_tokens"] == 3 + 1 + 1 + 2 == 7
    assert a["unk_characters"] == 3 + 1 + 6 + 2 == 12
    assert a["character_coverage"] == 18 / 30
    assert a["token_coverage"] == 11 / 18
    assert a["tokens_per_character"] == 18 / 30
    assert a["top_unk_characters"] == {"天": 3, "x": 1, "安": 1, "门": 1, "𠮷": 1}
    assert a["missing_specials"] == [] and a["size"] == 15 and a["kind"] == "wordpiece"
    assert a["unk_words_too_long"] == 0


def test_audit_compare(tmp_path):
    a_path, b_path = tmp_path / "a.txt", tmp_path / "b.txt"
    a_path.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    b_path.write_text("\n".join(TINY_VOCAB[:5] + ["天", "安", "门", "##天"]) + "\n", encoding="utf-8")
    docs = write_docs(tmp_path / "d.jsonl.gz", TINY_DOCS)
    a = audit_vocab(str(a_path), str(docs), compare=str(b_path), progress=False)["audits"][0]
    c = a["compare"]
    assert (c["common"], c["only_in_vocab"], c["only_in_other"], c["other_size"]) == (5, 10, 4, 9)
    assert c["only_in_vocab_by_type"] == {"char": 2, "cjk": 4, "continuation": 2, "word": 2}
    assert c["only_in_other_by_type"] == {"cjk": 3, "cjk_continuation": 1}
    assert c["only_in_other_sample"] == ["天", "安", "门", "##天"]
    assert c["other_audit"]["unk_characters"] == 30 - 5  # only 天 天 天 安 门 are known
    report = audit_mod.format_report({"corpus": {}, "audits": [a]})
    assert "only there: 天 安 门 ##天" in report


def test_audit_sentencepiece_counts_unknown_characters(built, tmp_path):
    docs = write_docs(tmp_path / "d.jsonl.gz", ["的的\u2603的"])  # a snowman: never in the sample
    a = audit_vocab(str(built / "spm.model"), str(docs), progress=False)["audits"][0]
    assert a["kind"] == "sentencepiece" and a["characters"] == 4
    assert a["unk_characters"] == 1 and a["top_unk_characters"] == {"\u2603": 1}
    # An spm.vocab listing can be diffed against, not audited.
    b = audit_vocab(str(built / "vocab.txt"), str(docs), compare=str(built / "spm.vocab"), progress=False)
    c = b["audits"][0]["compare"]
    assert c["other_audit"] is None and c["other_size"] == SIZE and c["common"] > 1000
    assert c["only_in_other_by_type"]["special"] == 2  # <pad> <unk>


def test_cli_build_and_audit(tmp_path, capsys):
    texts = ["我爱北京天安门。我爱中国。", "Hello world, hello BERT! 你好世界。"] * 3
    docs = write_docs(tmp_path / "docs" / "a.jsonl.gz", texts)
    out = tmp_path / "out"
    rc = build_mod.main(["--docs", str(tmp_path / "docs" / "*.jsonl.gz"), "--output", str(out),
                         "--vocab_size", "32", "--num_unused", "0", "--min_piece_count", "1", "--quiet"])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"vocab.txt", "audit.json"}
    assert "vocab.txt: wordpiece, 32 entries" in capsys.readouterr().out
    rc = audit_mod.main(["--vocab", str(out / "vocab.txt"), "--docs", str(docs),
                         "--output", str(tmp_path / "a.json"), "--quiet"])
    assert rc == 0 and "100.0000% of characters" in capsys.readouterr().out
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))["audits"][0]["unk_tokens"] == 0


# -- errors -----------------------------------------------------------------------

def test_error_empty_glob(tmp_path, capsys):
    with pytest.raises(CorpusError, match="matched no files"):
        sample_sentences(str(tmp_path / "nothing*.jsonl.gz"), 10, progress=False)
    rc = build_mod.main(["--docs", str(tmp_path / "none*.gz"), "--output", str(tmp_path), "--vocab_size", "9"])
    assert rc == 2 and "matched no files" in capsys.readouterr().err


def test_error_bad_document_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "好。"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: not valid JSON"):
        sample_sentences(str(p), 10, progress=False)
    gz = write_docs(tmp_path / "t.jsonl.gz", ["好。" * 5000])
    gz.write_bytes(gz.read_bytes()[:-40])  # truncated, as an interrupted copy leaves it
    with pytest.raises(CorpusError, match=r"t\.jsonl\.gz: cannot read"):
        sample_sentences(str(gz), 10, progress=False)
    p.write_text('{"id": 1}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.jsonl:1: expected a JSON object with a string 'text'"):
        sample_sentences(str(p), 10, progress=False)


def test_error_too_few_distinct_characters(tmp_path):
    docs = write_docs(tmp_path / "d.jsonl.gz", ["我爱北京。"] * 5)
    with pytest.raises(VocabSizeError, match=r"only 10 distinct entries .* fewer than vocab_size 1,000"):
        build_vocab(str(docs), str(tmp_path / "o"), 1000, num_unused=0, progress=False)
    assert not (tmp_path / "o" / "vocab.txt").exists()
    build_vocab(str(docs), str(tmp_path / "o"), 1000, num_unused=0, allow_smaller=True, progress=False)
    assert len((tmp_path / "o" / "vocab.txt").read_text(encoding="utf-8").split()) == 10
    with pytest.raises(VocabSizeError, match="no room after 104 special tokens"):
        build_vocab(str(docs), str(tmp_path / "o"), 100, progress=False)


def test_error_sentencepiece_size(tmp_path):
    docs = write_docs(tmp_path / "d.jsonl.gz", ["我爱北京天安门。", "今天天气很好。"] * 20)
    with pytest.raises(VocabSizeError, match="sentencepiece: the sample supports at most"):
        build_vocab(str(docs), str(tmp_path / "o"), 500, kind="sentencepiece", progress=False)
    with pytest.raises(VocabSizeError, match="smaller than the .* characters needed"):
        build_vocab(str(docs), str(tmp_path / "o"), 8, kind="sentencepiece", progress=False)


def test_error_bad_vocab_files(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text("[PAD]\n[UNK]\n的\n是\n的\n", encoding="utf-8")
    with pytest.raises(VocabError, match=r"v\.txt:5: duplicate entry '的' \(first at line 3\)"):
        load_vocab(str(p))
    p.write_bytes("[PAD]\n[UNK]\n".encode() + b"\xff\xfe\n")
    with pytest.raises(VocabError, match=r"v\.txt:3: not UTF-8"):
        load_vocab(str(p))
    # Ids are line numbers (as BERT and Hugging Face read vocab.txt): empty and
    # whitespace-only lines are entries; only empty lines at the end are not.
    p.write_text("[PAD]\n\n[UNK]\n\u2028\n##\u2028\n\n\n", encoding="utf-8")
    assert load_vocab(str(p)).tokens == ["[PAD]", "", "[UNK]", "\u2028", "##\u2028"]
    p.write_text("[PAD]\n \n[UNK]\n \n", encoding="utf-8")
    with pytest.raises(VocabError, match=r"v\.txt:4: duplicate entry ' ' \(first at line 2\)"):
        load_vocab(str(p))
    with pytest.raises(VocabError, match="cannot read vocab"):
        load_vocab(str(tmp_path / "missing.txt"))
    p.write_text("[PAD]\n的\n", encoding="utf-8")
    docs = write_docs(tmp_path / "d.jsonl.gz", ["的"])
    with pytest.raises(VocabError, match=r"no \[UNK\] entry"):
        audit_vocab(str(p), str(docs), progress=False)
    bad_model = tmp_path / "x.model"
    bad_model.write_bytes(b"not a model")
    with pytest.raises(VocabError, match="not a sentencepiece model"):
        load_vocab(str(bad_model))


def test_error_bad_compare_vocab_fails_before_reading(tmp_path, capsys):
    p = tmp_path / "dup.txt"
    p.write_text("a\na\n", encoding="utf-8")
    docs = write_docs(tmp_path / "d.jsonl.gz", ["我。"])
    rc = build_mod.main(["--docs", str(docs), "--output", str(tmp_path / "o"), "--vocab_size", "9",
                         "--compare", str(p)])
    assert rc == 2 and "dup.txt:2: duplicate entry 'a'" in capsys.readouterr().err
