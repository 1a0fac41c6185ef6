"""A character n-gram logistic-regression quality model (numpy only, no network).

Features: character 1-, 2- and 3-grams (whitespace removed) hashed into
``2**bits`` buckets with a fixed, process-independent hash, counted, and the
vector L2-normalised. Score: ``sigmoid(w . x + b)`` in [0, 1], 1 = looks like
the positive (clean) training text.

A model directory holds ``quality_model.json`` (format name and version,
hyper-parameters, training summary) and ``weights.npy`` (float32, one weight
per bucket). ``load_model`` refuses a directory of another format or version,
with one line saying what is wrong, and the build calls it before any stage.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any, Iterable, Optional

import numpy as np

from corpusflow.io.opener import LOCAL, Opener, is_url, join
from corpusflow.quality.signals import _SPACE, _table, codepoints

FORMAT = "corpusflow-quality-model"
FORMAT_VERSION = 1
META_FILE = "quality_model.json"
WEIGHTS_FILE = "weights.npy"
NGRAMS = (1, 2, 3)
DEFAULT_BITS = 18
# Score at most this many characters of a document: the n-gram mix of a long
# document is settled well before that, and it bounds the time per document.
MAX_CHARS = 20_000


class ModelError(ValueError):
    """A model directory that cannot be used (one-line message)."""


def features(text: str, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique bucket indices (int64) and their L2-normalised weights (float32)."""
    cps = codepoints(text[:MAX_CHARS])
    cps = cps[(_table()[cps] & _SPACE) == 0].astype(np.uint64)
    mask = np.uint64((1 << bits) - 1)
    parts = []
    for n in NGRAMS:
        m = cps.shape[0] - n + 1
        if m <= 0:
            continue
        h = np.full(m, np.uint64(n), dtype=np.uint64)
        for k in range(n):
            h = h * np.uint64(0x100000001B3) + cps[k:k + m]
        # splitmix-style finaliser so nearby code points spread over buckets
        h ^= h >> np.uint64(31)
        h *= np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        parts.append((h & mask).astype(np.int64))
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    idx, cnt = np.unique(np.concatenate(parts), return_counts=True)
    val = cnt.astype(np.float32)
    val /= np.float32(np.sqrt(np.dot(val, val)))
    return idx, val


class QualityModel:
    """Weights + bias over hashed character n-grams."""

    def __init__(self, weights: np.ndarray, bias: float, bits: int, info: Optional[dict] = None) -> None:
        self.weights = weights.astype(np.float32)
        self.bias = float(bias)
        self.bits = bits
        self.info = info or {}

    def score(self, text: str) -> float:
        """P(clean) for one document, rounded to 4 decimals."""
        idx, val = features(text, self.bits)
        z = float(np.dot(self.weights[idx], val)) + self.bias
        return round(1.0 / (1.0 + np.exp(-z)), 4)

    def save(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        np.save(os.path.join(path, WEIGHTS_FILE), self.weights)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "bits": self.bits,
                "ngrams": list(NGRAMS), "bias": self.bias, "max_chars": MAX_CHARS, **self.info}
        with open(os.path.join(path, META_FILE), "w", encoding="utf-8") as f:
            json.dump(meta, f, ensure_ascii=False, indent=1, sort_keys=True)
            f.write("\n")


def _read(path: str, opener: Opener) -> bytes:
    with opener.open(path) as f:
        return f.read()


def load_model(path: str, opener: Opener = LOCAL) -> QualityModel:
    """Load a model directory (local, or a URL such as ``gs://`` that ``opener`` reaches);
    ``ModelError`` with one line if it is not ours or not this version."""
    if not is_url(path) and not os.path.isdir(path):
        raise ModelError(f"--quality_model {path}: not a directory")
    meta_path = join(path, META_FILE)
    if not opener.exists(meta_path):
        raise ModelError(f"--quality_model {path}: no {META_FILE}; not a corpusflow quality model "
                         "(train one with python -m corpusflow.quality.train)")
    try:
        meta = json.loads(_read(meta_path, opener).decode("utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"--quality_model {path}: {META_FILE} is not readable JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"--quality_model {path}: {META_FILE} is not a {FORMAT} file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"--quality_model {path}: format version {meta.get('format_version')!r}, this "
                         f"corpusflow reads version {FORMAT_VERSION}; retrain it with python -m "
                         "corpusflow.quality.train")
    bits = meta.get("bits")
    if meta.get("ngrams") != list(NGRAMS) or not isinstance(bits, int) or not 8 <= bits <= 24:
        raise ModelError(f"--quality_model {path}: unsupported n-grams {meta.get('ngrams')!r} or bits {bits!r}")
    try:
        w = np.load(io.BytesIO(_read(join(path, WEIGHTS_FILE), opener)), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ModelError(f"--quality_model {path}: {WEIGHTS_FILE} is missing or not a numpy array ({e})") from None
    if w.shape != (1 << bits,) or not np.all(np.isfinite(w)):
        raise ModelError(f"--quality_model {path}: {WEIGHTS_FILE} has shape {w.shape}, expected ({1 << bits},) "
                         "finite weights")
    return QualityModel(w, float(meta.get("bias", 0.0)), bits,
                        {k: v for k, v in meta.items() if k not in ("format", "format_version", "bits", "ngrams",
                                                                     "bias", "max_chars")})


def model_digest(path: str, opener: Opener = LOCAL) -> str:
    """sha256 of the model's two files (for the clean stage's config hash)."""
    h = hashlib.sha256()
    for name in (META_FILE, WEIGHTS_FILE):
        h.update(_read(join(path, name), opener))
    return h.hexdigest()


def train(positives: Iterable[str], negatives: Iterable[str], bits: int = DEFAULT_BITS, epochs: int = 300,
          l2: float = 1e-4, lr: float = 0.1) -> QualityModel:
    """Full-batch Adam on the logistic loss (classes weighted to balance), L2-regularised.

    Deterministic: no random draws (zero init, documents in the given order).
    """
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    labels: list[float] = []
    for lab, docs in ((1.0, positives), (0.0, negatives)):
        for d in docs:
            idx, val = features(d, bits)
            if idx.size:
                rows.append((idx, val))
                labels.append(lab)
    y = np.asarray(labels, dtype=np.float64)
    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"training needs both classes, got {int(n_pos)} positive and {int(n_neg)} negative "
                         "documents")
    lengths = np.asarray([r[0].size for r in rows])
    indices = np.concatenate([r[0] for r in rows])
    data = np.concatenate([r[1] for r in rows]).astype(np.float64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    sw = np.where(y == 1.0, 0.5 / n_pos, 0.5 / n_neg)  # each class weighs one half
    D = 1 << bits
    w = np.zeros(D)
    b = 0.0
    mw = np.zeros(D)
    vw = np.zeros(D)
    mb = vb = 0.0
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, epochs + 1):
        z = np.add.reduceat(data * w[indices], starts) + b
        p = 1.0 / (1.0 + np.exp(-z))
        r = (p - y) * sw
        gw = np.bincount(indices, weights=data * np.repeat(r, lengths), minlength=D) + l2 * w
        gb = float(r.sum())
        mw = b1 * mw + (1 - b1) * gw
        vw = b2 * vw + (1 - b2) * gw * gw
        mb = b1 * mb + (1 - b1) * gb
        vb = b2 * vb + (1 - b2) * gb * gb
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        w -= lr * (mw / c1) / (np.sqrt(vw / c2) + eps)
        b -= lr * (mb / c1) / (np.sqrt(vb / c2) + eps)
    return QualityModel(w.astype(np.float32), b, bits,
                        {"trained": {"positive_docs": int(n_pos), "negative_docs": int(n_neg), "epochs": epochs,
                                     "l2": l2}})


def auc(scores_pos: list[float], scores_neg: list[float]) -> float:
    """Area under the ROC curve (ties count one half)."""
    pos = np.asarray(scores_pos, dtype=np.float64)
    neg = np.asarray(scores_neg, dtype=np.float64)
    if not pos.size or not neg.size:
        return float("nan")
    allv = np.concatenate((pos, neg))
    order = np.argsort(allv, kind="stable")
    ranks = np.empty(allv.size)
    sorted_v = allv[order]
    # average ranks over ties
    i = 0
    while i < sorted_v.size:
        j = i
        while j + 1 < sorted_v.size and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return float((ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def describe(model: QualityModel) -> dict[str, Any]:
    return {"bits": model.bits, "bias": model.bias, **model.info}
