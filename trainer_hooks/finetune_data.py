"""Labelled text for fine-tuning: readers (CLUE JSON lines, LCQMC TSV, THUCNews-style TSV), the label map, and
tokenisation with the pipeline's own cleaning normalisation + WordPiece (no TensorFlow needed here).

Every row that is not used is counted under a registered ``finetune:*`` counter and reported; nothing is
dropped silently. Rows that cannot be read at all (a TSV line with the wrong number of fields, a JSON line that
does not parse, a row without a label) stop the run with the file and line number.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from corpusflow.counters import CounterDict, register

FORMATS = ("auto", "clue_json", "lcqmc_tsv", "label_tsv")
TASKS = ("classify", "pair")

COUNTERS = register([
    "finetune:skipped:no_gold_label",   # CLUE rows whose label is '-' (annotators did not agree)
    "finetune:skipped:empty_sentence",  # a sentence that is empty after cleaning
    "finetune:skipped:header",          # a TSV header line (text_a/text_b/label or label/text)
    "finetune:truncated:long",          # rows cut to --max_seq_length (pretraining's truncation rule)
    "finetune:kept",                    # rows that became examples
])

_HEADERS = {("text_a", "text_b", "label"), ("sentence1", "sentence2", "label"), ("label", "text"),
            ("label", "sentence")}


class DataError(ValueError):
    """Input the fine-tuner refuses (message names the file, line or label)."""


@dataclasses.dataclass
class Row:
    """One labelled row as read: ``text_b`` is None for single-sentence tasks; ``label`` None when unlabelled."""

    text_a: str
    text_b: Optional[str]
    label: Optional[str]
    line: int


def detect_format(path: str) -> str:
    """``clue_json`` for a file whose first non-blank line is a JSON object, else a TSV by its field count."""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if line.lstrip().startswith("{"):
                return "clue_json"
            n = len(line.split("\t"))
            if n == 3:
                return "lcqmc_tsv"
            if n == 2:
                return "label_tsv"
            raise DataError(f"{path}:1: cannot tell the format: {n} tab-separated fields (lcqmc_tsv has 3, "
                            "label_tsv 2); pass --format")
    raise DataError(f"{path}: empty file")


def read_rows(path: str, fmt: str, task: str, counts: CounterDict, need_labels: bool = True) -> list[Row]:
    """Rows of ``path`` in format ``fmt`` (``auto`` detects it) for ``task``; skipped rows are counted."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt in ("lcqmc_tsv",) and task != "pair":
        raise DataError(f"{path}: lcqmc_tsv holds sentence pairs: use --task pair")
    if fmt == "label_tsv" and task != "classify":
        raise DataError(f"{path}: label_tsv holds single sentences: use --task classify")
    rows: list[Row] = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            if fmt == "clue_json":
                row = _clue_row(line, task, where, lineno)
            else:
                fields = line.split("\t")
                want = 3 if fmt == "lcqmc_tsv" else 2
                if len(fields) == want - 1 and not need_labels:
                    fields = fields + [""] if fmt == "lcqmc_tsv" else [""] + fields
                if len(fields) != want:
                    raise DataError(f"{where}: {len(fields)} tab-separated fields, {fmt} has {want}")
                if lineno == 1 and tuple(x.strip().lower() for x in fields) in _HEADERS:
                    counts("finetune:skipped:header")
                    continue
                if fmt == "lcqmc_tsv":
                    row = Row(fields[0], fields[1], fields[2].strip() or None, lineno)
                else:
                    row = Row(fields[1], None, fields[0].strip() or None, lineno)
            if row.label == "-":
                counts("finetune:skipped:no_gold_label")
                continue
            if row.label is None and need_labels:
                raise DataError(f"{where}: row has no label")
            rows.append(row)
    return rows


def _clue_row(line: str, task: str, where: str, lineno: int) -> Row:
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise DataError(f"{where}: not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: a JSON line must be an object")
    label = obj.get("label")
    label = None if label is None else str(label)
    if task == "pair":
        if "sentence1" not in obj or "sentence2" not in obj:
            raise DataError(f"{where}: --task pair needs 'sentence1' and 'sentence2'")
        return Row(str(obj["sentence1"]), str(obj["sentence2"]), label, lineno)
    if "sentence" not in obj:
        raise DataError(f"{where}: --task classify needs 'sentence'")
    return Row(str(obj["sentence"]), None, label, lineno)


# ------------------------------------------------------------------------------------------------------- labels


def build_labels(train: Sequence[Row]) -> list[str]:
    """The label set of the training rows, sorted (numeric labels numerically: '0' < '1' < '10')."""
    names = {r.label for r in train if r.label is not None}
    return sorted(names, key=lambda s: (0, int(s), s) if s.lstrip("-").isdigit() else (1, 0, s))


def check_labels(rows: Sequence[Row], labels: Sequence[str], path: str) -> None:
    """Refuse rows whose label is not in ``labels`` (a dev/test label never seen in training)."""
    known = set(labels)
    unseen: dict[str, list[int]] = {}
    for r in rows:
        if r.label is not None and r.label not in known:
            unseen.setdefault(r.label, []).append(r.line)
    if unseen:
        parts = [f"{lab!r} ({len(lines)} rows, first at line {lines[0]})" for lab, lines in sorted(unseen.items())]
        raise DataError(f"{path}: labels not in the training set {sorted(known)}: " + ", ".join(parts))


def write_labels(labels: Sequence[str], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{lab}\n" for lab in labels)


def read_labels(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [ln.rstrip("\n") for ln in f if ln.rstrip("\n")]


# ------------------------------------------------------------------------------------------------- tokenisation


class TextEncoder:
    """Text -> ``input_ids, input_mask, segment_ids`` exactly as the pipeline prepares pretraining text.

    Cleaning is ``corpusflow.clean.normalize.normalize`` (HTML, control characters, width folding, T->S when
    ``t2s``, junk, whitespace: the clean stage's rules) and WordPiece is ``corpusflow.tokenize.wordpiece``; the
    sequence is ``[CLS] a [SEP] (b [SEP])``. A pair that does not fit loses tokens from its longer side, as in
    pretraining (``corpusflow.pretrain.pairs.truncation_counts``), taken from the end so the result does not
    depend on a random draw.
    """

    def __init__(self, vocab_file: str, max_seq_length: int, do_lower_case: bool = True, t2s: bool = True) -> None:
        from corpusflow.clean import normalize
        from corpusflow.tokenize.wordpiece import FullTokenizer

        if max_seq_length < 3:
            raise DataError(f"--max_seq_length must be >= 3, got {max_seq_length}")
        self.tokenizer = FullTokenizer(vocab_file, do_lower_case=do_lower_case)
        self.max_seq_length = max_seq_length
        self._normalize = normalize.normalize
        self._converter = normalize.load_t2s() if t2s else None
        self.cls_id, self.sep_id = self.tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])

    def clean(self, text: str) -> str:
        from corpusflow.counters import null_inc
        # One line: the normaliser keeps paragraph breaks, which mean nothing inside one example.
        return self._normalize(text, null_inc, self._converter).replace("\n", " ")

    def ids(self, text: str) -> list[int]:
        return self.tokenizer.tokenize_ids(self.clean(text))

    def encode(self, text_a: str, text_b: Optional[str]) -> tuple[list[int], list[int], bool]:
        """(token ids, segment ids, truncated?) of one example, unpadded."""
        from corpusflow.pretrain.pairs import truncation_counts

        a = self.ids(text_a)
        b = self.ids(text_b) if text_b is not None else None
        budget = self.max_seq_length - (3 if b is not None else 2)
        ra, rb = truncation_counts(len(a), len(b) if b is not None else 0, budget)
        if ra:
            a = a[:len(a) - ra]
        if rb and b is not None:
            b = b[:len(b) - rb]
        tokens = [self.cls_id] + a + [self.sep_id]
        segments = [0] * len(tokens)
        if b is not None:
            tokens += b + [self.sep_id]
            segments += [1] * (len(b) + 1)
        return tokens, segments, bool(ra or rb)


@dataclasses.dataclass
class Encoded:
    """Padded arrays of a set of examples (``labels`` is -1 where a row had no label)."""

    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray
    labels: np.ndarray
    lines: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: np.ndarray) -> "Encoded":
        return Encoded(self.input_ids[index], self.input_mask[index], self.segment_ids[index], self.labels[index],
                       self.lines[index])


def encode_rows(rows: Iterable[Row], encoder: TextEncoder, labels: Sequence[str], counts: CounterDict,
                skip_empty: bool = True) -> Encoded:
    """Tokenise and pad ``rows``; a row with an empty sentence (after cleaning) is skipped and counted."""
    index = {lab: i for i, lab in enumerate(labels)}
    n = encoder.max_seq_length
    ids, segs, labs, lines = [], [], [], []
    for r in rows:
        if skip_empty and (not encoder.clean(r.text_a).strip()
                           or (r.text_b is not None and not encoder.clean(r.text_b).strip())):
            counts("finetune:skipped:empty_sentence")
            continue
        tok, seg, cut = encoder.encode(r.text_a, r.text_b)
        if cut:
            counts("finetune:truncated:long")
        counts("finetune:kept")
        ids.append(tok + [0] * (n - len(tok)))
        segs.append(seg + [0] * (n - len(seg)))
        labs.append(index[r.label] if r.label is not None else -1)
        lines.append(r.line)
    input_ids = np.asarray(ids, np.int32).reshape(-1, n)
    return Encoded(input_ids, (input_ids != 0).astype(np.int32) if len(ids) else np.zeros((0, n), np.int32),
                   np.asarray(segs, np.int32).reshape(-1, n), np.asarray(labs, np.int64), np.asarray(lines, np.int64))


# --------------------------------------------------------------------------------------------------------- metrics


def classification_metrics(gold: np.ndarray, pred: np.ndarray, num_labels: int) -> dict[str, Any]:
    """Accuracy and macro-F1: the mean F1 over the labels that occur in ``gold`` or ``pred`` (scikit-learn's
    ``f1_score(average='macro')`` without ``labels=``)."""
    gold = np.asarray(gold)
    pred = np.asarray(pred)
    if gold.size == 0:
        return {"accuracy": None, "macro_f1": None, "examples": 0}
    f1s = []
    for k in range(num_labels):
        tp = int(np.sum((pred == k) & (gold == k)))
        fp = int(np.sum((pred == k) & (gold != k)))
        fn = int(np.sum((pred != k) & (gold == k)))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(gold == pred)), "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
            "examples": int(gold.size)}
