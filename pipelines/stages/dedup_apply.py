"""The dedup stage's passes over clean shards: read documents, apply decisions.

Decisions come from ``dedup_join`` run files (a side input), read alongside the
shard because both are in sort-key order; documents never meet a shuffle.
"""

from __future__ import annotations

import json
from typing import Iterator

import apache_beam as beam
from apache_beam import pvalue

from corpusflow import counters
from corpusflow.dedup.exact import line_keys, remove_lines
from corpusflow.document import Document, Reject, record_key, stable_hash64
from pipelines import dedup_join as dj
from pipelines.beam_util import BeamInc, iter_json_lines
from pipelines.stages.common import REJECTS, StageStats

counters.register([
    "dedup:in", "dedup:kept", "dedup:duplicate:exact", "dedup:duplicate:near",
    "dedup:lines:removed", "dedup:lines:docs_changed", "dedup:filtered:too_short_after_dedup",
    "dedup:lines:partial_copies",
    "dedup:rejected:decontaminated",
])


class ReadDocs(beam.DoFn):
    """A docs shard file -> its document dicts, in file order."""

    def process(self, path: str):
        yield from iter_json_lines(path)


class _ShardDecisions(beam.DoFn):
    """One clean shard file -> ``decide(document dict, its decisions)`` per document.

    Decisions come from ``dedup_join`` run files (side input ``runs``), read
    alongside the shard because both are in sort-key order.
    """

    def __init__(self, num_buckets: int):
        self.num_buckets = num_buckets

    def process(self, path: str, runs: list):
        reader = dj.DecisionReader(runs, self.num_buckets)
        for d in iter_json_lines(path):
            dec = dj.split_decisions(reader.take(stable_hash64(d["id"])), record_key(d), d["id"])
            yield from self.decide(d, dec)

    def decide(self, d: dict, dec: dict[bytes, list[bytes]]) -> Iterator:
        """What one document becomes given its decisions; defined by each subclass (survivors, or applied)."""
        raise NotImplementedError


class WholeSurvivors(_ShardDecisions):
    """The documents no whole-document decision (exact, decontaminated, near) removes,
    with their whole clean text: the input of the next judge.

    Emits ``(id, source, text)`` (near dedup, decontamination) or, with ``docs``,
    the document dict (line keys). Line decisions are not applied: near dedup must
    see a near-copy as it arrived, not what line dedup would leave of it. Counts
    nothing: ``ApplyDecisions`` counts every document once.
    """

    def __init__(self, num_buckets: int, docs: bool = False):
        super().__init__(num_buckets)
        self.docs = docs

    def decide(self, d: dict, dec: dict[bytes, list[bytes]]) -> Iterator:
        if dj.EXACT in dec or dj.DECONTAM in dec or dj.NEAR in dec:
            return
        yield d if self.docs else (d["id"], d["source"], d["text"])


class ApplyDecisions(_ShardDecisions):
    """Every dedup decision applied: the kept document (main) or a Reject (tagged
    ``REJECTS``), counted, with the stage's stats (tagged ``STATS``) per bundle.

    Whole-document decisions first, repeated lines last, so a removed document is
    removed whole and line owners (chosen among whole survivors) never lose a line
    to a removed document.
    """

    def __init__(self, line_min_chars: int, min_chars: int, num_buckets: int):
        super().__init__(num_buckets)
        self.line_min_chars = line_min_chars
        self.min_chars = min_chars

    def setup(self) -> None:
        self.inc = BeamInc()

    def start_bundle(self) -> None:
        self.stats = StageStats()

    def finish_bundle(self):
        yield self.stats.emit()

    def decide(self, d: dict, dec: dict[bytes, list[bytes]]) -> Iterator:
        self.stats.doc_in(d["source"], d["text"])
        for out in self._apply(d, dec):
            if isinstance(out, pvalue.TaggedOutput):
                self.stats.reason("dedup", out.value["reason"])
            else:
                self.stats.doc_out(out["source"], out["text"])
            yield out

    def _apply(self, d: dict, dec: dict[bytes, list[bytes]]) -> Iterator:
        inc = self.inc
        doc = Document.from_json(d)
        inc("dedup:in")
        if dj.EXACT in dec:
            inc("dedup:duplicate:exact")
            yield pvalue.TaggedOutput(REJECTS, Reject.for_doc(
                doc, "dedup", "exact_duplicate", "duplicate",
                kept_id=dec[dj.EXACT][0].decode("utf-8", "surrogatepass")).to_json())
            return
        if dj.DECONTAM in dec:
            info = json.loads(dec[dj.DECONTAM][0])
            inc("dedup:rejected:decontaminated")
            yield pvalue.TaggedOutput(REJECTS, Reject.for_doc(
                doc, "dedup", "decontaminated", "rejected",
                detail=str(info.get("eval_file", ""))).to_json())
            return
        if dj.NEAR in dec:
            info = json.loads(dec[dj.NEAR][0])
            inc("dedup:duplicate:near")
            r = Reject.for_doc(doc, "dedup", "near_duplicate", "duplicate",
                               kept_id=info["kept_id"])
            out = r.to_json()
            out["similarity"] = info.get("similarity")
            out["cluster_id"] = info.get("cluster_id")
            yield pvalue.TaggedOutput(REJECTS, out)
            return
        if dj.LINE in dec:
            # Last: line owners were chosen among the documents that survive whole,
            # so a removed document never takes a line away from a kept one.
            gone = {int.from_bytes(k, "big") for k in dec[dj.LINE]}
            drop = [i for i, k in line_keys(doc.text, self.line_min_chars) if k in gone]
            if drop:
                chars = len("".join(doc.text.split()))
                doc.text = remove_lines(doc.text, drop)
                left = len("".join(doc.text.split()))
                inc("dedup:lines:removed", len(drop))
                inc("dedup:lines:docs_changed")
                # stats.json (stages.dedup.line_dedup) carries the same counts.
                lines = self.stats.data.setdefault("line_dedup", {})
                self.stats._add(lines, "lines_removed", len(drop))
                self.stats._add(lines, "docs_changed")
                if left < self.min_chars:
                    inc("dedup:filtered:too_short_after_dedup")
                    yield pvalue.TaggedOutput(REJECTS, Reject.for_doc(
                        doc, "dedup", "too_short_after_dedup", "filtered").to_json())
                    return
                if 2 * left < chars:
                    # Most of it was other documents' lines: a copy that near dedup
                    # did not match as a whole, kept as a fragment.
                    inc("dedup:lines:partial_copies")
                    self.stats._add(lines, "partial_copies")
        inc("dedup:kept")
        yield doc.to_json()
