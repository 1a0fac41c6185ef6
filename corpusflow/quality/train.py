"""``python -m corpusflow.quality.train --positive GLOB --negative GLOB --output DIR``.

Trains the character n-gram quality model offline (``corpusflow.quality.model``)
from documents in any format ``pipelines.build`` reads (the same readers and
the same cleaning, so the model sees text as the clean stage does), dedups
each class, holds out about one in ``--holdout`` documents, and prints the
held-out AUC. Documents are assigned to the held-out part by a hash of their
last 200 characters, so copies of one text (the same article under several
labels or headers) never sit on both sides of the split and inflate the AUC.
"""

from __future__ import annotations

import argparse
import glob
import sys
from typing import Iterator, Optional, Sequence

from corpusflow.counters import CounterDict
from corpusflow.document import Document, stable_hash64


def read_docs(patterns: Sequence[str], fmt: str = "auto", clean: bool = True) -> Iterator[str]:
    """Texts of every document the globs match, cleaned as the clean stage does (PII off)."""
    from corpusflow.clean.cleaner import CleanConfig, Cleaner
    from corpusflow.io.readers import read_file

    cleaner = Cleaner(CleanConfig(pii="off", quality_signals=False)) if clean else None
    inc = CounterDict()
    for pat in patterns:
        paths = sorted(glob.glob(pat, recursive=True))
        if not paths:
            raise ValueError(f"no file matches {pat!r}")
        for p in paths:
            for rec in read_file(p, fmt=fmt, inc=lambda name, n=1: None):
                if not isinstance(rec, Document):
                    continue
                if cleaner is not None:
                    out = cleaner.clean(rec, inc)
                    if not isinstance(out, Document):
                        continue
                    rec = out
                yield rec.text


def holdout_split(docs: list[str], every: int) -> tuple[list[str], list[str]]:
    """(train, held out): exact copies (same last 200 characters) removed, then the
    documents whose tail hashes to 0 mod ``every`` held out (none when ``every`` <= 1)."""
    seen: set[str] = set()
    train: list[str] = []
    held: list[str] = []
    for d in docs:
        key = d[-200:]
        if key in seen:
            continue
        seen.add(key)
        if every > 1 and stable_hash64(key) % every == 0:
            held.append(d)
        else:
            train.append(d)
    return train, held


def main(argv: Optional[Sequence[str]] = None) -> int:
    from corpusflow.quality import model as qm

    p = argparse.ArgumentParser(prog="python -m corpusflow.quality.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--positive", action="append", required=True, help="glob of clean (wanted) documents; repeatable")
    p.add_argument("--negative", action="append", required=True, help="glob of unwanted documents; repeatable")
    p.add_argument("--output", required=True, help="model directory to write")
    p.add_argument("--input_format", default="auto", help="reader format of every file (as pipelines.build)")
    p.add_argument("--bits", type=int, default=qm.DEFAULT_BITS, help="2**bits hashed n-gram buckets (8..24)")
    p.add_argument("--epochs", type=int, default=300, help="full-batch optimisation steps")
    p.add_argument("--l2", type=float, default=1e-4, help="L2 regularisation")
    p.add_argument("--holdout", type=int, default=5, help="about one in N documents is held out for the AUC (0: none)")
    args = p.parse_args(argv)
    if not 8 <= args.bits <= 24:
        print("corpusflow.quality.train: error: --bits must be in [8, 24]", file=sys.stderr)
        return 2
    try:
        pos = list(read_docs(args.positive, args.input_format))
        neg = list(read_docs(args.negative, args.input_format))
    except (ValueError, OSError) as e:
        print(f"corpusflow.quality.train: error: {e}", file=sys.stderr)
        return 2
    h = args.holdout

    def split(docs: list[str]) -> tuple[list[str], list[str]]:
        return holdout_split(docs, h)

    pos_tr, pos_te = split(pos)
    neg_tr, neg_te = split(neg)
    try:
        model = qm.train(pos_tr, neg_tr, bits=args.bits, epochs=args.epochs, l2=args.l2)
    except ValueError as e:
        print(f"corpusflow.quality.train: error: {e}", file=sys.stderr)
        return 2
    model.info["sources"] = {"positive": list(args.positive), "negative": list(args.negative)}
    if pos_te and neg_te:
        auc = qm.auc([model.score(d) for d in pos_te], [model.score(d) for d in neg_te])
        model.info["heldout"] = {"positive_docs": len(pos_te), "negative_docs": len(neg_te), "auc": round(auc, 4)}
        print(f"held-out AUC {auc:.4f} ({len(pos_te)} positive, {len(neg_te)} negative documents)")
    model.save(args.output)
    print(f"wrote {args.output} ({len(pos_tr)} positive, {len(neg_tr)} negative training documents)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
