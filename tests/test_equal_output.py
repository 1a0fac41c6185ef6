"""Issue 8's equal-output guarantee: speed work never changes an output byte.

The sample corpus (``data/sample``) is built end to end with several instance
configurations, and the content of every TFRecord shard and docs shard is
compared with digests pinned below. The pinned values were recorded with the
code from before the issue-8 performance work (and the same build run twice
gives them), so any change to the bytes of the output fails here.

Regenerating the digests is a deliberate act, for a change that is *meant* to
alter the output (a new masking rule, a different vocab, ...), never to make a
speed change pass:

    CORPUSFLOW_PRINT_DIGESTS=1 .venv/bin/python -m pytest tests/test_equal_output.py -s -q

prints new ``PINNED_DOCS``/``PINNED_TFRECORDS`` tables to paste here; say why in the commit message.

Gzip shards (docs) are digested after decompression, so a different zlib build
(same content, other compressed bytes) does not fail the test; TFRecord shards
are uncompressed by default and digested as written.

The second half checks the fast paths directly against the reference paths
they replaced, on the sample and (when present) the shared corpus: whole-
document word starts vs per-sentence spans, one-pass dedup keys vs
``text_key``/``line_keys``.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from corpusflow.counters import null_inc
from corpusflow.pretrain.instances import InstanceBuilder
from tests.pipeline_util import ROOT, SHARED, build

VOCAB = str(ROOT / "data" / "vocab" / "sample_vocab.txt")
COMMON = ("--vocab_file", VOCAB, "--num_shards", "4", "--num_doc_shards", "4",
          "--token_boundary")

# name -> extra build options. Configurations after the first reuse its clean
# and dedup stages (--resume) and rebuild only the TFRecords.
CONFIGS: dict[str, tuple[str, ...]] = {
    "jieba-wwm-sop": ("--masking", "wwm", "--pair_task", "sop"),
    "jieba-ngram-nsp": ("--masking", "ngram", "--pair_task", "nsp"),
    "jieba-token-nsp-256-per_token": ("--masking", "token", "--pair_task", "nsp",
                                      "--max_seq_length", "256", "--max_predictions_per_seq", "40",
                                      "--mask_decision", "per_token"),
    "jieba_rs-wwm-sop": ("--masking", "wwm", "--pair_task", "sop", "--segmenter", "jieba_rs"),
}

# sha256 over "path\tsha256(content)\n" lines of the shards (see ``digests``).
PINNED_DOCS = {  # clean and dedup stages (the same for every configuration below)
    "clean_docs": "6b711f2b39bf6dcc7b56ad26ed530f5871a132ae652607ad9f8c547979c32d9a",
    "docs": "03df4302ef87b4fdea5f0aa79644952202295310ae1f2bc6c1f2d183727546ba",
}
PINNED_TFRECORDS = {
    "jieba-wwm-sop": "e6eb7a052cc7a0202ccd95f8f93308684045591b2816136b38575a07670175d0",
    "jieba-ngram-nsp": "8a07dbdad159e941496020952d22a86929ea8a21350f8c1c2da2f1faa4c6e751",
    "jieba-token-nsp-256-per_token": "f8268eca1402dc351dc48379b1cf8976e2ff9d0289e242704b8244e6ca26fa3a",
    "jieba_rs-wwm-sop": "d0e26e08c44ad5d7c7e0947c0486aa0ba907a061f57699183013adc369b8bb27",
}


def _content(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if not path.endswith(".gz"):
        return data
    # Documents record the path they were read from (meta.file), made absolute by
    # the driver; digested relative to the checkout so the digests do not depend
    # on where the repository is.
    return gzip.decompress(data).replace(f'"{ROOT}/'.encode(), b'"')


def digests(out: Path) -> dict[str, str]:
    """One digest per output kind: the cleaned docs, the final docs, the shards."""
    kinds = {"clean_docs": "stages/clean/docs-*", "docs": "docs/docs-*",
             "tfrecords": "tfrecords/part-*"}
    result = {}
    for kind, pattern in kinds.items():
        h = hashlib.sha256()
        paths = sorted(glob.glob(str(out / pattern)))
        assert paths, f"no {pattern} under {out}"
        for p in paths:
            h.update(f"{os.path.relpath(p, out)}\t{hashlib.sha256(_content(p)).hexdigest()}\n"
                     .encode())
        result[kind] = h.hexdigest()
    return result


# Relative input paths, read from the repository root (the driver makes them
# absolute; ``_content`` takes the checkout's root out of meta.file again).
INPUTS = ["--input", "data/sample/*.jsonl", "--input", "data/sample/*.gz",
          "--input", "data/sample/*.txt"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("equal")
    got = {}
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for i, (name, args) in enumerate(CONFIGS.items()):
            if "jieba_rs" in args:
                try:
                    import rjieba  # noqa: F401
                except ImportError:
                    continue
            build(out, *COMMON, *args, *(("--resume",) if i else ()), inputs=INPUTS)
            got[name] = digests(out)
    finally:
        os.chdir(cwd)
    if os.environ.get("CORPUSFLOW_PRINT_DIGESTS"):
        first = next(iter(got.values()))
        print("\nPINNED_DOCS = {")
        for kind in ("clean_docs", "docs"):
            print(f'    "{kind}": "{first[kind]}",')
        print("}\nPINNED_TFRECORDS = {")
        for name, d in got.items():
            print(f'    "{name}": "{d["tfrecords"]}",')
        print("}")
    return got


@pytest.mark.slow
def test_docs_bytes_are_pinned(built):
    for name, d in built.items():
        assert {k: d[k] for k in PINNED_DOCS} == PINNED_DOCS, (
            f"docs of {name} changed; if that is intended, regenerate the digests (module doc)")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_tfrecord_bytes_are_pinned(built, name):
    if name not in built:
        pytest.skip("rjieba not installed")
    assert built[name]["tfrecords"] == PINNED_TFRECORDS[name], (
        f"TFRecords of {name} changed; if that is intended, regenerate the digests (module doc)")


# -- the fast paths against the reference paths they replaced -----------------

def _documents(limit_chars: int) -> list[str]:
    """Texts of the sample corpus, then of the shared corpus's JSON-lines files."""
    from corpusflow.counters import CounterDict
    from corpusflow.document import Document
    from corpusflow.io.readers import read_file
    paths = [p for p in sorted(glob.glob(str(ROOT / "data" / "sample" / "*")))
             if not p.endswith(".md")]
    if SHARED.exists():
        paths += sorted(str(p) for p in SHARED.rglob("*.jsonl"))
    texts: list[str] = []
    n = 0
    for p in paths:
        for rec in read_file(p, inc=CounterDict()):
            if isinstance(rec, Document):
                texts.append(rec.text)
                n += len(rec.text)
                if n >= limit_chars:
                    return texts
    return texts


EDGE_CASES = [[], [""], ["a"], ["我来到北京\r", "清华大学"], ["我来到\n北京", "x"],
              ["  空格  ", "\t"], ["", "", "中文"], ["abc", "def"], ["\r", "\n"], ["a\r", "\nb"],
              ["你好。", "“引号”", "2016年，GDP增长6.7%"]]


@pytest.mark.parametrize("name", ["jieba", "jieba_rs"])
def test_document_word_starts_equal_sentence_spans(name):
    from corpusflow.clean.sentences import split_sentences
    from corpusflow.segment.registry import make_segmenter
    if name == "jieba_rs":
        pytest.importorskip("rjieba")
    seg = make_segmenter(name)
    seg.setup()
    docs = [split_sentences(t) for t in _documents(1_500_000)] + EDGE_CASES
    fast_used = 0
    for sentences in docs:
        fast = seg.word_starts(sentences)
        if fast is None:   # the caller then takes the per-sentence path
            continue
        fast_used += 1
        ref = InstanceBuilder.word_starts_from_spans(sentences, seg.segment_batch(sentences), null_inc)
        assert np.array_equal(np.unique(fast), np.unique(ref)), sentences
    assert fast_used > 0.9 * len(docs)
    # A separator that a sentence's last character would swallow ("\r" + "\n")
    # must send the caller to the per-sentence path.
    assert seg.word_starts(["我来到北京\r", "清华大学"]) is None
    assert seg.word_starts([]) is None


def test_one_pass_dedup_keys_equal_separate_keys():
    from corpusflow.dedup.exact import line_keys, text_and_line_keys, text_key
    texts = _documents(1_000_000) + ["", "\n", "ΣΑΣ\nσας", "Straße\r\nSTRASSE", "a\u200bb\n\ufeffc",
                                     "中国，你好！\n中国, 你好\n\n中国你好"]
    for t in texts:
        for m in (0, 3, 10):
            assert text_and_line_keys(t, m) == (text_key(t), line_keys(t, m))
