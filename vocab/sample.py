"""Read cleaned documents and reservoir-sample sentences from them.

Documents are JSON lines (``.jsonl`` or ``.jsonl.gz``) with at least a ``text``
field, as the cleaning pipeline writes them. Reading streams line by line, and
sampling keeps at most ``n`` sentences, so a 30 GB corpus needs memory for the
sample only. Files are read in sorted order and the RNG is a seeded
``random.Random``: the same files and options give the same sample.
"""

from __future__ import annotations

import bz2
import dataclasses
import glob
import gzip
import io
import json
import math
import os
import random
import re
import sys
import time
import zlib
from typing import IO, Callable, Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")

# Sentence ends: Chinese full-width and ASCII terminators (the cleaning stage
# keeps full-width punctuation) plus line breaks between paragraphs. Closing
# quotes/brackets right after a terminator stay with their sentence.
_SENTENCE_RE = re.compile(r"[^\n。！？；!?]*[。！？；!?]+[”’」』）)]*|[^\n。！？；!?]+")
# Longer pieces (tables, lists without punctuation) are cut so one sampled item
# stays small and below sentencepiece's max_sentence_length.
MAX_SENTENCE_CHARS = 2000


class CorpusError(ValueError):
    """Input documents that cannot be read as asked."""


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, stripped; empty ones dropped."""
    out = []
    for s in _SENTENCE_RE.findall(text):
        s = s.strip()
        while len(s) > MAX_SENTENCE_CHARS:
            out.append(s[:MAX_SENTENCE_CHARS])
            s = s[MAX_SENTENCE_CHARS:].strip()
        if s:
            out.append(s)
    return out


def expand_docs(patterns: str | Sequence[str]) -> list[str]:
    """Files matched by each glob, sorted; a glob matching nothing is an error."""
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise CorpusError("no --docs given")
    files: list[str] = []
    for pat in patterns:
        if "://" in pat:
            from apache_beam.io.filesystems import FileSystems  # heavy: only for remote paths

            matched = sorted(m.path for m in FileSystems.match([pat])[0].metadata_list)
        else:
            matched = sorted(p for p in glob.glob(pat, recursive=True) if not os.path.isdir(p))
        if not matched:
            raise CorpusError(f"--docs {pat!r} matched no files")
        files.extend(m for m in matched if m not in files)
    return files


def _open_text(path: str) -> IO[str]:
    if "://" in path:
        from apache_beam.io.filesystems import FileSystems

        # FileSystems.open decompresses by extension (.gz, .bz2, ...).
        return io.TextIOWrapper(FileSystems.open(path), encoding="utf-8")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    if path.endswith(".bz2"):
        return bz2.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


class Progress:
    """Counts printed to stderr at most every ``every_s`` seconds."""

    def __init__(self, label: str, enabled: bool = True, every_s: float = 10.0) -> None:
        self.label, self.enabled, self.every_s = label, enabled, every_s
        self.start = self.last = time.monotonic()

    def tick(self, msg_fn: Callable[[], str]) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            print(f"{self.label}: {msg_fn()} ({now - self.start:.0f} s)", file=sys.stderr, flush=True)

    def done(self, msg: str) -> None:
        if self.enabled:
            print(f"{self.label}: {msg} ({time.monotonic() - self.start:.1f} s)", file=sys.stderr, flush=True)


@dataclasses.dataclass
class ReadStats:
    files: int = 0
    documents: int = 0


def iter_texts(files: Sequence[str], stats: ReadStats | None = None,
               progress: Progress | None = None) -> Iterator[str]:
    """The ``text`` of every document in ``files``, in order.

    A line that is not a JSON object with a string ``text`` is an error naming
    the file and line: silently skipping would hide a truncated or wrong input.
    """
    stats = stats if stats is not None else ReadStats()
    for path in files:
        stats.files += 1
        try:
            with _open_text(path) as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise CorpusError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                        raise CorpusError(f"{path}:{lineno}: expected a JSON object with a string 'text'")
                    stats.documents += 1
                    if progress is not None:
                        progress.tick(lambda: f"{stats.documents:,} documents from {stats.files}/{len(files)} files")
                    yield obj["text"]
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:
            raise CorpusError(f"{path}: cannot read ({e})") from None


def _open_unit(rng: random.Random) -> float:
    # random() may return 0.0; Algorithm L needs u in (0, 1).
    u = rng.random()
    while u == 0.0:
        u = rng.random()
    return u


def reservoir_sample(items: Iterable[T], k: int, rng: random.Random) -> tuple[list[T], int]:
    """A uniform sample of ``k`` items (all of them if fewer) and the number seen.

    Li's Algorithm L: draws random numbers only for the items it keeps (about
    k·log(n/k) of them), not one per item, so sampling costs little next to
    reading. Items kept are in reservoir order, which depends only on the RNG.
    """
    if k <= 0:
        raise ValueError("sample size must be positive")
    res: list[T] = []
    it = iter(items)
    for x in it:
        res.append(x)
        if len(res) == k:
            break
    else:
        return res, len(res)
    seen = k
    w = math.exp(math.log(_open_unit(rng)) / k)
    next_i = seen + int(math.log(_open_unit(rng)) / math.log1p(-w))
    for x in it:
        if seen == next_i:
            res[rng.randrange(k)] = x
            w *= math.exp(math.log(_open_unit(rng)) / k)
            next_i = seen + 1 + int(math.log(_open_unit(rng)) / math.log1p(-w))
        seen += 1
    return res, seen


@dataclasses.dataclass
class Sample:
    """Sampled sentences and what was read to get them."""

    sentences: list[str]
    files: int
    documents: int
    sentences_seen: int

    def describe(self) -> dict:
        return {"files": self.files, "documents": self.documents,
                "sentences_seen": self.sentences_seen, "sentences_sampled": len(self.sentences)}


def sample_sentences(docs: str | Sequence[str], n: int = 1_000_000, seed: int = 12345,
                     progress: bool = True) -> Sample:
    """Reservoir-sample ``n`` sentences from the documents matched by ``docs``."""
    files = expand_docs(docs)
    stats = ReadStats()
    prog = Progress("vocab.sample", progress)

    def sentences() -> Iterator[str]:
        for text in iter_texts(files, stats, prog):
            yield from split_sentences(text)

    sample, seen = reservoir_sample(sentences(), n, random.Random(seed))
    prog.done(f"{stats.documents:,} documents, {seen:,} sentences, kept {len(sample):,}")
    if not sample:
        raise CorpusError(f"no text in the {len(files)} file(s) matched by --docs")
    return Sample(sample, stats.files, stats.documents, seen)
