"""FullTokenizer: BERT basic + WordPiece rules, offsets, vocab validation, speed."""

from __future__ import annotations

import os
import pickle
import re
import time
from pathlib import Path

import pytest

from corpusflow.tokenize.wordpiece import FullTokenizer, load_vocab

SPECIALS = ["[PAD]", "[unused1]", "[unused2]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# The shared corpus beside the repo; CORPUSFLOW_CORPUS overrides (tests skip
# or fall back to a committed string when it is absent).
CORPUS = Path(os.environ.get("CORPUSFLOW_CORPUS",
                             Path(__file__).resolve().parents[2] / "shared" / "corpus"))
MIXED = ("北京时间4月12日，湖人Lakers在主场以 102:98 击败马刺。Héllo WORLD! unaffable iPhone6s "
         "价格\u3000下调 3.5%；e\u0301clair\u200bdone ab\x00cd 豈\uF900 line\u2028break")


def write_vocab(path: Path, tokens: list[str]) -> str:
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def tok(tmp_path: Path) -> FullTokenizer:
    words = ["un", "##aff", "##able", "hello", "world", "!", ",", "iphone", "##6", "##s",
             "3", ".", "5", "%", "；", "：", ":", "102", "98", "4", "12", "lakers", "eclair",
             "done", "abcd", "line", "break", "##a", "a"]
    chars = sorted(set(c for c in MIXED if "\u4e00" <= c <= "\u9fff" or c in "，。"))
    return FullTokenizer(write_vocab(tmp_path / "vocab.txt", SPECIALS + words + chars))


def spans(tok: FullTokenizer, text: str) -> list[tuple[str, str]]:
    ids, st, en = tok.tokenize_with_offsets(text)
    return [(tok.inv_vocab[i], text[a:b]) for i, a, b in zip(ids, st, en)]


def test_basic_and_wordpiece_rules(tok):
    assert tok.tokenize("Hello, 世界!") == ["hello", ",", "[UNK]", "[UNK]", "!"]
    assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]
    assert spans(tok, "xx unaffable") == [("[UNK]", "xx"), ("un", "un"), ("##aff", "aff"),
                                          ("##able", "able")]
    # Each CJK character is a token; Latin words are pieced; punctuation split.
    assert spans(tok, "湖人Lakers在iPhone6s") == [
        ("湖", "湖"), ("人", "人"), ("lakers", "Lakers"), ("在", "在"),
        ("iphone", "iPhone"), ("##6", "6"), ("##s", "s")]
    assert spans(tok, "3.5%；") == [("3", "3"), (".", "."), ("5", "5"), ("%", "%"), ("；", "；")]


def test_normalisation_and_cleaning(tok):
    # Accents stripped (precomposed and combining), case folded; the span
    # covers the input characters, combining mark included.
    assert spans(tok, "Héllo") == [("hello", "Héllo")]
    assert spans(tok, "e\u0301clair") == [("eclair", "e\u0301clair")]
    # Control / zero-width characters are dropped without splitting the word.
    assert spans(tok, "ab\x00cd") == [("abcd", "ab\x00cd")]
    assert spans(tok, "ab\u200bcd") == [("abcd", "ab\u200bcd")]
    # Ideographic space and U+2028 separate words (BERT's str.split()).
    assert spans(tok, "价格\u3000下调") == [("价", "价"), ("格", "格"), ("下", "下"), ("调", "调")]
    assert spans(tok, "line\u2028break") == [("line", "line"), ("break", "break")]
    # A CJK compatibility ideograph is NFD-mapped to the unified one (豈 U+8C48).
    assert spans(tok, "\uF900") == [("豈", "\uF900")]
    # A lone surrogate is a control character: dropped, no crash.
    assert spans(tok, "a\ud800a") == [("a", "a"), ("##a", "a")]
    assert tok.tokenize("") == [] and tok.tokenize_with_offsets(" \n\t ") == ([], [], [])


def test_unk_rules(tok):
    # A word that cannot be pieced is one [UNK] spanning the whole word.
    assert spans(tok, "hellox world") == [("[UNK]", "hellox"), ("world", "world")]
    long_word = "un" + "aff" * 40   # 122 chars > 100: [UNK] although it could be pieced
    assert spans(tok, long_word) == [("[UNK]", long_word)]
    assert tok.tokenize("un" + "aff" * 32 + "a") != ["[UNK]"]  # 99 chars: pieced


def test_no_lower_case(tmp_path):
    t = FullTokenizer(write_vocab(tmp_path / "v.txt", SPECIALS + ["Héllo", "hello"]),
                      do_lower_case=False)
    assert t.tokenize("Héllo hello HELLO") == ["Héllo", "hello", "[UNK]"]


def test_ids_conversions_and_bounds(tok):
    ids, st, en = tok.tokenize_with_offsets(MIXED)
    assert all(0 <= i < len(tok.vocab) for i in ids)
    assert all(0 <= a < b <= len(MIXED) for a, b in zip(st, en))
    assert st == sorted(st)
    assert tok.convert_tokens_to_ids(tok.convert_ids_to_tokens(ids)) == ids
    assert tok.convert_tokens_to_ids(["[CLS]", "no-such-token"]) == [tok.cls_id, tok.unk_id]
    with pytest.raises(KeyError):
        tok.convert_ids_to_tokens([len(tok.vocab)])
    assert tok.tokenize(MIXED) == tok.convert_ids_to_tokens(ids)


def test_pickle_and_cache_consistency(tok):
    first = tok.tokenize_with_offsets(MIXED)
    again = tok.tokenize_with_offsets(MIXED)          # now from caches
    clone = pickle.loads(pickle.dumps(tok))
    assert clone._table is None and not clone._run_cache
    assert first == again == clone.tokenize_with_offsets(MIXED)
    # Sentence-at-a-time equals document-at-a-time (the pipeline joins with "\n").
    parts = ["北京时间4月12日，", "unaffable iPhone6s", "价格\u3000下调"]
    ids, st, _ = tok.tokenize_with_offsets("\n".join(parts))
    assert ids == [i for p in parts for i in tok.tokenize_with_offsets(p)[0]]


@pytest.mark.parametrize("content,problem", [
    ("[PAD]\n[UNK]\n[CLS]\n[SEP]\n", "missing special tokens ['[MASK]']"),
    ("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n[UNK]\n", "vocab.txt:6: duplicate entry '[UNK]' (first at line 2)"),
    ("[PAD]\n \n[UNK]\n[CLS]\n[SEP]\n[MASK]\n \n", "vocab.txt:7: duplicate entry ' ' (first at line 2)"),
    ("\ufeff[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", "vocab.txt:1: starts with a UTF-8 byte-order mark"),
    ("\n\n", "vocab.txt: vocab is empty"),
])
def test_vocab_validation(tmp_path, content, problem):
    p = tmp_path / "vocab.txt"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(problem)):
        FullTokenizer(str(p))
    with pytest.raises(ValueError, match="not found"):
        load_vocab(str(tmp_path / "missing.txt"))


def test_vocab_lines_are_split_on_newline_only(tmp_path):
    """Ids are line numbers: only the line end (\\n or \\r\\n) is removed, as in
    BERT's and Hugging Face's loaders; whitespace-only and empty entries keep
    their ids and are never produced; trailing empty lines are not entries."""
    p = tmp_path / "vocab.txt"
    p.write_bytes("[PAD]\r\n\u2028\n\n[UNK]\n##\u2028\n\u00a0\n[CLS]\n[SEP] \n[SEP]\n[MASK]\n\u0085x\n"
                  "x\n[\n]\nsep\n\n\r\n".encode())
    vocab = load_vocab(str(p))
    assert vocab == {"[PAD]": 0, "\u2028": 1, "": 2, "[UNK]": 3, "##\u2028": 4, "\u00a0": 5, "[CLS]": 6,
                     "[SEP] ": 7, "[SEP]": 8, "[MASK]": 9, "\u0085x": 10, "x": 11, "[": 12, "]": 13, "sep": 14}
    tok = FullTokenizer(str(p))
    # Whitespace separates and is never a token; U+0085 is a control character (dropped).
    assert tok.tokenize_ids("x\u2028x\u00a0[SEP]\u0085x  \u2028") == [11, 11, 12, 14, 13, 11]
    # Not UTF-8 is named with its line.
    p.write_bytes(b"[PAD]\n[UNK]\n\xff\n")
    with pytest.raises(ValueError, match=r"vocab\.txt:3: not UTF-8"):
        load_vocab(str(p))


def corpus_lines(limit_chars: int) -> list[str]:
    lines: list[str] = []
    n = 0
    for f in sorted((CORPUS / "news").glob("*.txt")) + sorted((CORPUS / "baike").glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                lines.append(line)
                n += len(line)
                if n >= limit_chars:
                    return lines
    return lines


def test_matches_hf_bert_tokenizer_on_corpus(tmp_path):
    """Same ids and offsets as HF tokenizers' BERT pipeline (an independent
    implementation of Google's rules) on real text, with a trained vocab."""
    tokenizers = pytest.importorskip("tokenizers")
    lines = corpus_lines(300_000) if CORPUS.is_dir() else []
    lines = lines + [MIXED, "The quick brown FOX jumps—over the lazy dog’s back…", "ＡＢＣ１２３ｘｙｚ"]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines), encoding="utf-8")
    trainer = tokenizers.BertWordPieceTokenizer(lowercase=True)
    trainer.train([str(corpus)], vocab_size=3000, show_progress=False,
                  special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    trainer.save_model(str(tmp_path))
    vocab = str(tmp_path / "vocab.txt")
    hf = tokenizers.BertWordPieceTokenizer(vocab, lowercase=True)
    tok = FullTokenizer(vocab)
    nchars = sum(len(x) for x in lines)
    t0 = time.process_time()
    ours = [tok.tokenize_with_offsets(x) for x in lines]
    dt = time.process_time() - t0
    for text, (ids, st, en) in zip(lines, ours):
        enc = hf.encode(text, add_special_tokens=False)
        assert ids == enc.ids, text[:80]
        assert list(zip(st, en)) == [tuple(o) for o in enc.offsets], text[:80]
    print(f"\ntokenizer: {nchars / dt / 1e6:.2f}M chars/s (cold caches, per line)")
