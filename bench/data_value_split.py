"""Split a raw corpus into training and held-out documents before any cleaning.

Used by ``bench/data_value.py``. Every input file is read with corpusflow's own reader (``read_file``: format and
encoding detected per file as a build does; decoding and format parsing only, nothing cleaned). A document goes
to the held-out side when a seeded hash of its id falls below ``heldout_share``; ids, not positions, decide, so
the two wiki files that hold the same articles under the same ids put each article on one side.

The corpus also holds the same text under different ids (one article in two formats, under several labels, in
Traditional and in Simplified script). So that the evaluation set is really unseen, every training document that
shares a 13-character n-gram with a held-out document (corpusflow's decontamination index: comparison form, T->S
on both sides) is left out of the training side and counted.

Each side is written as JSON lines ``{"id", "title": "", "text"}`` (the pipeline's ``wiki_json`` format, UTF-8):
the text is exactly what the reader gave, so a build of it sees the same raw text as a build of the files
themselves. The title is left empty because the pipeline never trains on titles and ``wiki_json`` would drop a
first line equal to the title. Records the reader rejects (no text) are counted and not written. Cutting the
original files at record boundaries instead was tried: auto format detection then reads some copies differently
(a text-lines file whose first lines went to the other side looks like blank-line-separated BERT text).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from typing import Iterator

from corpusflow.dedup.decontam import DecontamConfig, EvalIndex
from corpusflow.document import Document
from corpusflow.io.readers import read_file


class SplitError(RuntimeError):
    """The corpus cannot be split (nothing to read, one side empty, or a side does not read back)."""


@dataclasses.dataclass
class SplitStats:
    files: int = 0
    documents: int = 0               # documents the reader found
    reader_rejects: int = 0          # records the reader rejects (no text, bad JSON...): not written
    heldout: int = 0
    train: int = 0
    decontaminated: int = 0          # training documents left out for sharing text with a held-out one
    heldout_chars: int = 0
    train_chars: int = 0


def corpus_files(corpus: str) -> list[str]:
    """Regular files under ``corpus`` (recursively, sorted), README* and hidden files excluded."""
    out = []
    for path in sorted(glob.glob(os.path.join(corpus, "**"), recursive=True)):
        name = os.path.basename(path)
        if os.path.isfile(path) and not name.startswith(".") and not name.upper().startswith("README"):
            out.append(path)
    if not out:
        raise SplitError(f"no input files under {corpus}")
    return out


def is_heldout(doc_id: str, seed: int, share: float) -> bool:
    """A pure function of (seed, id): the same document is held out in every run."""
    h = hashlib.sha256(f"{seed}\x00heldout\x00{doc_id}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64 < share


def _documents(files: list[str], stats: SplitStats) -> Iterator[Document]:
    for path in files:
        stats.files += 1
        for rec in read_file(path):
            if isinstance(rec, Document):
                stats.documents += 1
                yield rec
            else:
                stats.reader_rejects += 1


def _write_jsonl(path: str, docs: list[Document]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d.id, "title": "", "text": d.text}, ensure_ascii=False) + "\n")


def _check_reads_back(path: str, docs: list[Document]) -> None:
    """The pipeline's reader must give back every document with its text unchanged."""
    got = [r for r in read_file(path, fmt="wiki_json")]
    bad = [r for r in got if not isinstance(r, Document)]
    texts = [r.text for r in got if isinstance(r, Document)]
    if bad or texts != [d.text for d in docs]:
        raise SplitError(f"{path} does not read back as the {len(docs)} documents written "
                         f"({len(texts)} read, {len(bad)} rejected)")


def split_corpus(corpus: str, train_path: str, heldout_path: str, heldout_share: float, seed: int,
                 decontaminate: bool = True) -> SplitStats:
    """Write the training and held-out JSON-lines files of ``corpus``; return the counts."""
    if not 0.0 < heldout_share < 1.0:
        raise SplitError(f"heldout_share must be in (0, 1), got {heldout_share}")
    stats = SplitStats()
    docs = list(_documents(corpus_files(corpus), stats))
    held = [d for d in docs if is_heldout(d.id, seed, heldout_share)]
    rest = [d for d in docs if not is_heldout(d.id, seed, heldout_share)]
    if decontaminate and held:
        import opencc  # T->S on both sides: the corpus holds Traditional copies of Simplified text
        index = EvalIndex.from_texts([("heldout", [d.text for d in held])], DecontamConfig(t2s=True),
                                     opencc.OpenCC("t2s").convert)
        train = [d for d in rest if index.check(d.text, _no_count) is None]
    else:
        train = rest
    stats.heldout, stats.train, stats.decontaminated = len(held), len(train), len(rest) - len(train)
    stats.heldout_chars = sum(len(d.text) for d in held)
    stats.train_chars = sum(len(d.text) for d in train)
    if not held or not train:
        raise SplitError(f"split of {corpus} left {len(train)} training and {len(held)} held-out documents; "
                         "use a larger corpus or another held-out share")
    _write_jsonl(train_path, train)
    _write_jsonl(heldout_path, held)
    _check_reads_back(train_path, train)
    _check_reads_back(heldout_path, held)
    return stats


def _no_count(name: str, n: int = 1) -> None:
    pass
