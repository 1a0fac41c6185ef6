"""Helpers for tests that run the real pipeline on the in-process runner."""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
from pathlib import Path

from pipelines.build import run

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
SHARED = ROOT.parent / "shared" / "corpus"
SAMPLE_INPUTS = ["--input", str(SAMPLE / "*.jsonl"), "--input", str(SAMPLE / "*.gz"),
                 "--input", str(SAMPLE / "*.txt")]


def build(out: Path, *args: str, inputs: list[str] | None = None) -> dict:
    argv = (inputs if inputs is not None else SAMPLE_INPUTS) + [
        "--output", str(out), "--progress", "false"] + list(args)
    return run(argv)


def read_jsonl_gz(pattern: str) -> list[dict]:
    out = []
    for path in sorted(glob.glob(pattern)):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            out.extend(json.loads(line) for line in f if line.strip())
    return out


def digest_tree(root: Path, subdirs: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every output file under ``subdirs`` (manifests excluded)."""
    out = {}
    for sub in subdirs:
        for path in sorted(glob.glob(str(root / sub / "*"))):
            if os.path.isfile(path) and not os.path.basename(path).startswith("_"):
                out[os.path.relpath(path, root)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out
