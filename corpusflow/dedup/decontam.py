"""Decontamination: find documents that contain text from evaluation sets.

An ``EvalIndex`` holds 64-bit hashes of the character n-grams of every evaluation
text (same comparison form as near-dup: NFKC, lower case, letters and digits only),
as one sorted numpy array, so a CMRC-sized dev set costs a few MB and a lookup is a
``searchsorted``. A document is contaminated when at least ``min_matches`` distinct
n-grams of it are in the index. Evaluation texts shorter than ``ngram`` but at
least ``min_text_chars`` long (LCQMC-style short questions) are matched whole: the
document must contain the entire text.

Evaluation files: a whole-file JSON document (CMRC/SQuAD style), JSON lines, TSV
(LCQMC: ``sentence1<TAB>sentence2<TAB>label``) or plain text, one text a line.
Every string value in JSON is taken except identifiers and labels.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TextIO

import numpy as np

from corpusflow.counters import Inc, register
from corpusflow.dedup.minhash import comparison_form, rolling_hashes64

COUNTERS = register([
    "decontam:checked",   # documents looked up in the index
    "decontam:removed",   # documents matching an evaluation text (dropped or flagged)
])

# JSON keys whose values are ids, labels or links, never evaluation text.
SKIP_KEYS = frozenset({"id", "qid", "idx", "guid", "uid", "label", "labels", "url",
                       "answer_start", "category", "source"})

# How much of the matched text goes into the decision (for audits).
EXCERPT_CHARS = 60


@dataclasses.dataclass(frozen=True)
class DecontamConfig:
    """``ngram`` characters of comparison form (see the module doc for the rest).

    13 from ``python -m tests.neardup_eval --decontam`` (DuReader Q&A as the eval
    set, 521 wiki/news documents as clean text): 8 chars flags 12 clean documents
    (2.3%, mostly shared English words), 10 flags 1, 13 and longer flag none; an
    evaluation text planted into 300 clean documents is found at every length.
    """

    ngram: int = 13
    min_matches: int = 1
    min_text_chars: int = 8
    # n-grams found in more than this many distinct eval texts are template text
    # ("下列说法正确的是"...), not content; they are left out of the index.
    max_text_freq: int = 20
    action: str = "drop"  # or "flag": recorded in each decision for the caller
    t2s: bool = False

    def __post_init__(self) -> None:
        if self.action not in ("drop", "flag"):
            raise ValueError(f"action must be 'drop' or 'flag', got {self.action!r}")
        if self.ngram < 2 or self.min_matches < 1 or not 1 <= self.min_text_chars <= self.ngram:
            raise ValueError("need ngram >= 2, min_matches >= 1, 1 <= min_text_chars <= ngram")


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k not in SKIP_KEYS:
                yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def eval_texts(content: str) -> Iterator[str]:
    """The evaluation texts in one file's content (format detected, see module doc)."""
    stripped = content.lstrip("\ufeff").strip()
    if stripped[:1] in ("{", "["):
        try:
            yield from _strings(json.loads(stripped))
            return
        except ValueError:
            pass  # JSON lines, or text that happens to start with a bracket
    for line in stripped.splitlines():
        line = line.strip()
        if not line:
            continue
        if line[:1] in ("{", "["):
            try:
                yield from _strings(json.loads(line))
                continue
            except ValueError:
                pass
        yield from line.split("\t")


@dataclasses.dataclass
class EvalIndex:
    """Sorted n-gram hashes with the file each came from (the first file wins)."""

    cfg: DecontamConfig
    files: list[str]                 # full paths, index = file number
    ngrams: np.ndarray               # uint64, sorted, unique
    ngram_file: np.ndarray           # int32, file number per entry of ngrams
    wholes: dict[int, tuple[np.ndarray, np.ndarray]]  # length -> (sorted hashes, file numbers)
    stats: dict[str, int]
    t2s: Optional[Callable[[str], str]] = None  # applied to documents too

    @classmethod
    def from_texts(cls, texts_by_file: Sequence[tuple[str, Iterable[str]]],
                   cfg: DecontamConfig,
                   t2s: Optional[Callable[[str], str]] = None) -> "EvalIndex":
        """Index ``[(path, texts), ...]``; file order decides attribution ties."""
        n = cfg.ngram
        hashes: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        whole: dict[int, list[tuple[int, int]]] = {}
        stats = {"texts": 0, "short_texts_skipped": 0, "whole_texts": 0, "ngrams": 0,
                 "frequent_ngrams_dropped": 0}
        files = [p for p, _ in texts_by_file]
        for fno, (_, texts) in enumerate(texts_by_file):
            for text in texts:
                form = comparison_form(text, t2s)
                stats["texts"] += 1
                if len(form) < cfg.min_text_chars:
                    stats["short_texts_skipped"] += 1
                elif len(form) < n:
                    stats["whole_texts"] += 1
                    whole.setdefault(len(form), []).append(
                        (int(rolling_hashes64(form, len(form))[0]), fno))
                else:
                    h = np.unique(rolling_hashes64(form, n))
                    hashes.append(h)
                    owners.append(np.full(len(h), fno, dtype=np.int32))
        if hashes:
            all_h = np.concatenate(hashes)
            all_f = np.concatenate(owners)
            # Stable sort by hash keeps file order within equal hashes: the first
            # entry of each run is the earliest file, and the run length is the
            # number of texts (per file, unique) containing the n-gram.
            order = np.argsort(all_h, kind="stable")
            all_h, all_f = all_h[order], all_f[order]
            uniq, first, counts = np.unique(all_h, return_index=True, return_counts=True)
            keep = counts <= cfg.max_text_freq
            stats["frequent_ngrams_dropped"] = int((~keep).sum())
            ngrams, ngram_file = uniq[keep], all_f[first][keep]
        else:
            ngrams, ngram_file = np.empty(0, np.uint64), np.empty(0, np.int32)
        stats["ngrams"] = int(len(ngrams))
        wholes = {}
        for length, entries in whole.items():
            entries = sorted(set(entries))  # by hash, then file number
            h = np.array([e[0] for e in entries], dtype=np.uint64)
            f = np.array([e[1] for e in entries], dtype=np.int32)
            uniq, first = np.unique(h, return_index=True)
            wholes[length] = (uniq, f[first])
        return cls(cfg, files, ngrams, ngram_file, wholes, stats, t2s)

    @classmethod
    def from_paths(cls, paths: Sequence[str], cfg: DecontamConfig,
                   opener: Callable[[str], TextIO] = lambda p: open(p, encoding="utf-8", errors="replace"),
                   t2s: Optional[Callable[[str], str]] = None) -> "EvalIndex":
        """Read and index evaluation files (``opener`` lets Beam read gs:// paths)."""
        if t2s is None and cfg.t2s:
            import opencc
            t2s = opencc.OpenCC("t2s").convert
        texts = []
        for p in paths:
            with opener(p) as f:
                texts.append((p, list(eval_texts(f.read()))))
        return cls.from_texts(texts, cfg, t2s)

    def check(self, text: str, inc: Inc) -> Optional[dict[str, Any]]:
        """The decision for one document, or None if it is clean."""
        inc("decontam:checked")
        form = comparison_form(text, self.t2s)
        if not form:
            return None
        best: Optional[tuple[int, int, int, int]] = None  # (-matches, file, pos, length)
        if len(self.ngrams) and len(form) >= self.cfg.ngram:
            best = _lookup(rolling_hashes64(form, self.cfg.ngram), self.ngrams,
                           self.ngram_file, self.cfg.ngram, best)
        for length, (h, f) in self.wholes.items():
            if len(form) >= length:
                best = _lookup(rolling_hashes64(form, length), h, f, length, best)
        if best is None or -best[0] < self.cfg.min_matches:
            return None
        matches, fno, pos, length = -best[0], best[1], best[2], best[3]
        inc("decontam:removed")
        return {"reason": "decontaminated", "eval_file": os.path.basename(self.files[fno]),
                "eval_path": self.files[fno], "matched_ngrams": matches,
                "action": self.cfg.action,
                "excerpt": form[pos:pos + max(length, EXCERPT_CHARS)]}


def _lookup(doc_h: np.ndarray, index: np.ndarray, owner: np.ndarray, length: int,
            best: Optional[tuple[int, int, int, int]]) -> Optional[tuple[int, int, int, int]]:
    """Fold one index's hits into ``best``: most distinct matching n-grams per file
    wins, then the smaller file number, then the earliest position."""
    pos = np.searchsorted(index, doc_h)
    pos[pos == len(index)] = 0
    hit = index[pos] == doc_h
    if not hit.any():
        return best
    where = np.flatnonzero(hit)
    files = owner[pos[where]]
    for fno in np.unique(files):
        in_file = where[files == fno]
        cand = (-len(np.unique(doc_h[in_file])), int(fno), int(in_file[0]), length)
        if best is None or cand < best:
            best = cand
    return best
