"""Does the pipeline's WordPiece give the ids BERT's reference tokenizers give?

A check, not a pipeline stage: ``tests/test_standard_vocab.py`` and
``bench/tokenizer_agreement.py`` use it to compare ``FullTokenizer`` ids with
Hugging Face ``tokenizers.BertWordPieceTokenizer``, ``transformers.
BertTokenizerFast`` and (when its file is at hand) Google's own
``tokenization.FullTokenizer``, text unit by text unit.

Text units come from any file: every ``\\n``-separated line; a line holding a
JSON object contributes its text fields (the fields the pipeline's reader makes
the document from, for the formats it knows; every string value otherwise),
joined with ``\\n``. Each unit is compared twice: as read (``raw``), and as
the instances stage tokenizes it (``pipeline``: cleaned by
``corpusflow.clean.normalize.normalize``, split by ``split_sentences``, the
sentences joined with ``\\n``, exactly as ``InstanceBuilder.prepare`` does).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
import types
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from corpusflow.tokenize.wordpiece import FullTokenizer, is_chinese_char

Encoder = Callable[[Sequence[str]], list[list[int]]]

#: Files that are not text (skipped when walking a corpus directory).
_BINARY_SUFFIXES = (".gz", ".bz2", ".zst", ".xz", ".zip", ".tfrecord", ".npy", ".bin")


# ------------------------------------------------------------- reference tokenizers


def hf_tokenizers_encoder(vocab_file: str, do_lower_case: bool = True) -> Encoder:
    """``tokenizers.BertWordPieceTokenizer`` ids, no [CLS]/[SEP]."""
    import tokenizers

    tok = tokenizers.BertWordPieceTokenizer(vocab_file, lowercase=do_lower_case)

    def encode(texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]
    return encode


def transformers_encoder(vocab_file: str, do_lower_case: bool = True) -> Encoder:
    """``transformers.BertTokenizerFast`` ids (built from ``vocab_file`` alone), no [CLS]/[SEP]."""
    import transformers

    tok = transformers.BertTokenizerFast(vocab_file, do_lower_case=do_lower_case)

    def encode(texts: Sequence[str]) -> list[list[int]]:
        return tok(list(texts), add_special_tokens=False)["input_ids"]
    return encode


def google_encoder(tokenization_py: str, vocab_file: str, do_lower_case: bool = True) -> Encoder:
    """Google's ``tokenization.FullTokenizer`` (run from its file, unchanged) ids.

    The file imports TensorFlow only for ``tf.gfile.GFile`` in ``load_vocab``;
    a stand-in that opens the file the way GFile does (``\\n`` ends a line)
    saves the TensorFlow import.
    """
    gfile = types.SimpleNamespace(GFile=lambda path, mode="r": open(path, mode, encoding="utf-8", newline="\n"))
    stub = types.ModuleType("tensorflow")
    stub.gfile = gfile  # type: ignore[attr-defined]
    saved = sys.modules.get("tensorflow")
    sys.modules["tensorflow"] = stub
    try:
        spec = importlib.util.spec_from_file_location("_google_bert_tokenization", tokenization_py)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if saved is None:
            del sys.modules["tensorflow"]
        else:
            sys.modules["tensorflow"] = saved
    tok = mod.FullTokenizer(vocab_file, do_lower_case=do_lower_case)

    def encode(texts: Sequence[str]) -> list[list[int]]:
        return [tok.convert_tokens_to_ids(tok.tokenize(t)) for t in texts]
    return encode


def ours_encoder(vocab_file: str, do_lower_case: bool = True) -> Encoder:
    """The pipeline's ``FullTokenizer`` ids (its numpy path, as the instances stage calls it)."""
    tok = FullTokenizer(vocab_file, do_lower_case=do_lower_case)

    def encode(texts: Sequence[str]) -> list[list[int]]:
        return [tok.tokenize_arrays(t)[0].tolist() for t in texts]
    return encode


# ------------------------------------------------------------------- text units


@dataclasses.dataclass(frozen=True)
class Unit:
    """One comparable text: where it came from and what it says."""

    file: str
    line: int  # 1-based
    text: str


def _string_leaves(obj: Any, out: list[str]) -> None:
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _string_leaves(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _string_leaves(v, out)


def record_text(obj: Any) -> str:
    """The text of one JSON record: what the pipeline's reader takes for the
    formats it knows (title, then the document text), every string value otherwise."""
    from corpusflow.io import formats

    kind = formats.json_kind(obj)
    if kind is not None:
        built = formats.JSON_BUILDERS[kind](obj, "", 0)
        if not isinstance(built, tuple):  # a Document, not a (reject reason, id)
            return "\n".join(p for p in (built.title, built.text) if p)
    leaves: list[str] = []
    _string_leaves(obj, leaves)
    return "\n".join(leaves)


def decode_file(data: bytes) -> str:
    """UTF-8 or GB18030 as the pipeline's reader detects it; undecodable bytes become U+FFFD."""
    from corpusflow.io.formats import SAMPLE_BYTES, detect_encoding

    enc = detect_encoding(data[:SAMPLE_BYTES], at_eof=len(data) <= SAMPLE_BYTES)
    codec = "gb18030" if enc == "gb18030" else "utf-8"
    return data.decode(codec, errors="replace").lstrip("\ufeff")


def file_units(path: str, name: Optional[str] = None) -> Iterator[Unit]:
    """The text units of one file (see the module docstring); blank lines give none."""
    with open(path, "rb") as f:
        text = decode_file(f.read())
    name = name or path
    for i, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                line = record_text(obj)
        if line.strip():
            yield Unit(name, i, line)


def corpus_files(root: str) -> list[str]:
    """Every file under ``root`` that is not compressed or binary, in sorted order."""
    out = []
    for d, _, files in os.walk(root):
        for f in files:
            if not f.endswith(_BINARY_SUFFIXES):
                out.append(os.path.join(d, f))
    return sorted(out)


def corpus_units(root: str) -> Iterator[Unit]:
    for path in corpus_files(root):
        yield from file_units(path, os.path.relpath(path, root))


class PipelineView:
    """What the instances stage tokenizes for a text: cleaned (T->S included,
    as the default ``--t2s``), split into sentences, joined with ``\\n``."""

    def __init__(self, t2s: bool = True) -> None:
        from corpusflow.clean import normalize

        self._normalize = normalize.normalize
        self._converter = normalize.load_t2s() if t2s else None

    def __call__(self, text: str) -> str:
        from corpusflow.clean.sentences import split_sentences
        from corpusflow.counters import null_inc

        return "\n".join(split_sentences(self._normalize(text, null_inc, self._converter)))


# ------------------------------------------------------------------- comparison


@dataclasses.dataclass
class Agreement:
    """Per reference: units compared, units with equal ids, and the first differences."""

    reference: str
    units: int = 0
    agree: int = 0
    tokens: int = 0
    differences: list[dict] = dataclasses.field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.agree / self.units if self.units else 1.0

    def line(self) -> str:
        return (f"{self.reference}: {self.agree:,}/{self.units:,} units agree "
                f"({100 * self.rate:.4f}%), {self.tokens:,} tokens")


def first_difference(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n


def compare(units: Iterable[Unit], ours: Encoder, references: dict[str, Encoder],
            view: Optional[Callable[[str], str]] = None, *, batch: int = 512,
            keep: int = 20, inv_vocab: Optional[dict[int, str]] = None) -> dict[str, Agreement]:
    """Compare ``ours`` with each reference over ``units`` (each text through ``view`` first).

    Keeps up to ``keep`` differences per reference: file, line, the first
    differing token position and a few tokens around it on each side.
    """
    results = {name: Agreement(name) for name in references}
    pending: list[Unit] = []

    def flush() -> None:
        texts = [view(u.text) if view else u.text for u in pending]
        mine = ours(texts)
        for name, enc in references.items():
            res = results[name]
            for u, t, a, b in zip(pending, texts, mine, enc(texts)):
                res.units += 1
                res.tokens += len(a)
                if a == b:
                    res.agree += 1
                elif len(res.differences) < keep:
                    k = first_difference(a, b)
                    show = (lambda ids: [inv_vocab.get(i, i) for i in ids]) if inv_vocab else list
                    res.differences.append({
                        "file": u.file, "line": u.line, "position": k,
                        "ours": show(a[max(0, k - 3):k + 4]), "reference": show(b[max(0, k - 3):k + 4]),
                        "text": t[:200]})
        pending.clear()

    for u in units:
        pending.append(u)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return results


# --------------------------------------------------------------- output checks


def forbidden_ids(inv_vocab: dict[int, str]) -> dict[str, set[int]]:
    """Ids a BERT tokenizer must never emit for Chinese text with this vocab:
    ``[unusedN]``, ``##`` + a CJK ideograph, and whitespace-only (or empty) tokens."""
    unused = {i for i, t in inv_vocab.items() if t.startswith("[unused") and t.endswith("]")}
    cjk_cont = {i for i, t in inv_vocab.items()
                if t.startswith("##") and len(t) == 3 and is_chinese_char(ord(t[2]))}
    blank = {i for i, t in inv_vocab.items() if not t.strip() or not t.removeprefix("##").strip()}
    return {"unused": unused, "cjk_continuation": cjk_cont, "whitespace": blank}
