"""Beam composites for decontamination: documents sharing long n-grams with eval sets.

The n-gram index and the check are ``corpusflow.dedup.decontam`` (no Beam); this
module expands the eval globs, builds the index once per worker and counts hits
per eval file. Like ``NearDedup`` it returns decisions; the dedup stage applies them.
"""

from __future__ import annotations

import io
from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from corpusflow.dedup import decontam as dc
from corpusflow.dedup.decontam import DecontamConfig
from pipelines.beam_util import BeamInc

__all__ = ["Decontaminate", "DecontamConfig", "DecontamPerFile", "expand_eval_globs"]


class _DecontamFn(beam.DoFn):
    def __init__(self, eval_paths: Sequence[str], cfg: DecontamConfig) -> None:
        self._paths = list(eval_paths)
        self._cfg = cfg

    def setup(self) -> None:
        # Each worker builds the index from the eval files (a few MB of n-gram hashes).
        self._index = dc.EvalIndex.from_paths(self._paths, self._cfg, opener=_open_beam)
        self._inc = BeamInc()

    def process(self, doc: tuple[str, str, str]):
        doc_id, _, text = doc
        hit = self._index.check(text, self._inc)
        if hit is not None:
            yield doc_id, hit


def _open_beam(path: str) -> io.TextIOBase:
    return io.TextIOWrapper(FileSystems.open(path), encoding="utf-8", errors="replace")


def expand_eval_globs(globs: Sequence[str]) -> list[str]:
    """Every file matched by the globs, sorted; a glob matching nothing is an error."""
    paths: list[str] = []
    for g in globs:
        matched = [m.path for r in FileSystems.match([g]) for m in r.metadata_list]
        if not matched:
            raise ValueError(f"--decontaminate glob matched no files: {g}")
        paths.extend(matched)
    return sorted(set(paths))


class Decontaminate(beam.PTransform):
    """Documents sharing long character n-grams with evaluation sets.

    Input ``(doc_id, source, text)``; output ``(doc_id, {"reason": "decontaminated",
    "eval_file": basename, "eval_path", "matched_ngrams", "action", "excerpt"})``
    for each contaminated document (use ``DecontamPerFile`` for counts per file).
    Counters ``decontam:checked`` and ``decontam:removed``. Globs are expanded when
    the pipeline is built; one matching nothing is an error.
    """

    def __init__(self, eval_globs: Sequence[str], config: Optional[DecontamConfig] = None) -> None:
        super().__init__()
        self._paths = expand_eval_globs(eval_globs)
        self._cfg = config or DecontamConfig()

    def expand(self, docs):
        return docs | "Check" >> beam.ParDo(_DecontamFn(self._paths, self._cfg))


class DecontamPerFile(beam.PTransform):
    """``Decontaminate`` output -> ``(eval file basename, documents flagged)``."""

    def expand(self, flagged):
        return (flagged
                | "EvalFile" >> beam.Map(lambda kv: kv[1]["eval_file"])
                | "Count" >> beam.combiners.Count.PerElement())
