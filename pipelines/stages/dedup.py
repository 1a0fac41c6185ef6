"""Stage ``dedup``: exact, near and line dedup of the clean shards -> ``docs/docs-*``.

Documents are never grouped: every decision that needs the whole corpus is
computed from small keys, kept in sorted run files (``pipelines.dedup_join``)
and applied in another streaming pass over the clean shards
(``dedup_apply``), which keeps memory flat in corpus size on any runner.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from corpusflow.config import Config, option
from pipelines import beam_util
from pipelines import dedup_join as dj
from pipelines.sharded_write import ShardedWrite
from pipelines.stages.base import Ctx, Stage, collect, pipeline, side_outputs, stage_files
from pipelines.stages.common import REJECTS, STATS, keyed_doc, keyed_reject
from pipelines.stages.dedup_apply import ApplyDecisions, ReadDocs, WholeSurvivors

MAX_SHARDS = 100_000


@dataclasses.dataclass(frozen=True)
class DocsConfig(Config):
    """The deduplicated documents' files (hashed by the dedup stage)."""

    GROUP = "corpusflow: input and output"

    docs_format: str = option("jsonl", "Format of the deduplicated documents in DIR/docs/.",
                              choices=("jsonl", "parquet"))
    num_doc_shards: int = option(16, f"Shards of the cleaned and deduplicated documents "
                                     f"(1..{MAX_SHARDS}).", lo=1, hi=MAX_SHARDS)


@dataclasses.dataclass(frozen=True)
class DedupConfig(Config):
    """Which duplicates are removed, and how near is near."""

    GROUP = "corpusflow: deduplication (stage dedup)"

    exact_dedup: bool = option(True, "Drop documents whose text equals another's (smallest id "
                                     "kept).", kind="bool")
    line_dedup: bool = option(True, "C4-style: a repeated line is kept in one document only.",
                              kind="bool")
    line_dedup_min_chars: int = option(10, "Lines shorter than this are never "
                                           "line-deduplicated.", lo=1)
    near_dedup: bool = option(False, "MinHash near-duplicate removal of whole documents.",
                              kind="bool")
    minhash_threshold: Optional[float] = option(
        None, "Jaccard threshold of near-duplicates (0..1; default: the detector's own, 0.8).",
        lo=0.0, hi=1.0, lo_open=True, nullable=True, type=float)
    decontaminate: Optional[list] = option(
        None, "Evaluation-set glob whose n-grams must not leak into training data; repeat for "
              "several.", kind="list", path=True, metavar="GLOB")


def run(ctx: Ctx) -> dict:
    """Exact, near and line dedup as a disk-backed join (see ``pipelines.dedup_join``).

    Order: exact duplicates, then (when on) decontamination and near dedup on the
    survivors' whole clean text, then line dedup among the documents still there.
    A near-copy is judged as it arrived and removed whole; line owners are chosen
    only among documents that survive whole, so no line is lost with a removed one.
    """
    b = ctx.config(DedupConfig)
    docs = ctx.config(DocsConfig)
    paths = stage_files(f"{ctx.out}/stages/clean/docs", docs.num_doc_shards, ".jsonl.gz")
    tmp = f"{ctx.out}/dedup/_tmp"
    p = pipeline(ctx)

    def shards(label: str):
        return p | f"{label}Files" >> beam.Create(paths) | f"{label}Spread" >> beam.Reshuffle()

    # Whole-document judges (near dedup, decontamination) need line dedup after
    # them; without them, exact and line keys come from one read (a duplicate's
    # owner has the same lines and a smaller record key: line owners are the same).
    whole_first = b.near_dedup or b.decontaminate
    decisions = []
    if b.exact_dedup or (b.line_dedup and not whole_first):
        keys = (shards("Keys") | "ReadForKeys" >> beam.ParDo(ReadDocs())
                | "DedupKeys" >> beam.ParDo(dj.DedupKeys(b.exact_dedup,
                                                         b.line_dedup and not whole_first,
                                                         b.line_dedup_min_chars))
                .with_outputs("lines", main="exact"))
        if b.exact_dedup:
            exact = keys.exact | "ExactDecisions" >> dj.Decisions(f"{tmp}/exact", dj.EXACT)
            decisions.append(exact.runs)
            (exact[dj.SIZES] | "ExactSizes" >> beam.Map(lambda kv: (str(kv[0]), kv[1]))
             | "ExactSizeHist" >> beam.CombinePerKey(sum)
             | "ExactHistList" >> beam.Map(lambda kv: {"exact_group_sizes": {kv[0]: kv[1]}})
             | "ExactHist" >> beam_util.WriteJson(f"{ctx.out}/stages/dedup_groups.json", merge=True))
        if b.line_dedup and not whole_first:
            decisions.append((keys.lines | "LineDecisions" >> dj.Decisions(f"{tmp}/lines", dj.LINE))
                             .runs)
    key_runs = (decisions or [p | "NoDecisions" >> beam.Create([])]) | "KeyRuns" >> beam.Flatten()
    runs = beam.pvalue.AsList(key_runs)
    if whole_first:
        # Exact survivors with their whole clean text (no line decisions exist yet).
        survivors = shards("Near") | "Survivors" >> beam.ParDo(WholeSurvivors(dj.NUM_BUCKETS),
                                                               runs=runs)
        id_runs = [key_runs]
        if b.near_dedup:
            # Imported only when asked for: MinHash pulls datasketch and scipy.
            from pipelines.near_dedup import NearDedup, NearDedupConfig
            kw = {}
            if b.minhash_threshold is not None:
                kw["threshold"] = b.minhash_threshold
            near = survivors | "NearDedup" >> NearDedup(NearDedupConfig(**kw), f"{tmp}/near")
            # Spilled where they are made: a Flatten of the decisions themselves
            # could be buffered whole by the local runner.
            id_runs.append(near["dropped"] | "NearDecisions" >> beam.Map(dj.id_decision(dj.NEAR))
                           | "SpillNearDecisions" >> dj.spill_decisions(f"{tmp}/near-decisions"))
            (near["clusters"] | "NearSizes" >> beam.Map(lambda c: (str(c["size"]), 1))
             | "NearSizeHist" >> beam.CombinePerKey(sum)
             | "NearHistList" >> beam.Map(lambda kv: {"near_cluster_sizes": {kv[0]: kv[1]}})
             | "NearHist" >> beam_util.WriteJson(f"{ctx.out}/stages/dedup_near_groups.json", merge=True))
            clusters = near["clusters"] | "KeyClusters" >> beam.Map(keyed_reject)
            clusters | "WriteClusters" >> ShardedWrite(f"{ctx.out}/dedup/clusters", 1, fmt="jsonl",
                                                       gzip_output=True)
        if b.decontaminate:
            from pipelines.decontaminate import DecontamConfig, Decontaminate
            # Eval sets get the same T->S as the corpus, or Traditional dev files
            # would never match the cleaned (Simplified) documents.
            flagged = survivors | "Decontaminate" >> Decontaminate(
                b.decontaminate, DecontamConfig(t2s=ctx.b.t2s))
            id_runs.append(flagged | "DecontamDecisions" >> beam.Map(dj.id_decision(dj.DECONTAM))
                           | "SpillDecontamDecisions" >> dj.spill_decisions(f"{tmp}/id-decisions"))
        whole_runs = id_runs | "WholeDocRuns" >> beam.Flatten()
        all_runs = [whole_runs]
        if b.line_dedup:
            # Line keys of the documents that survive whole: a near-copy or a
            # contaminated document never owns a line, so the document kept in its
            # place loses none of it.
            line_keys = (shards("Lines") | "WholeSurvivors" >> beam.ParDo(
                WholeSurvivors(dj.NUM_BUCKETS, docs=True), runs=beam.pvalue.AsList(whole_runs))
                | "LineKeys" >> beam.ParDo(dj.DedupKeys(False, True, b.line_dedup_min_chars))
                .with_outputs("lines", main="exact"))
            all_runs.append((line_keys.lines
                             | "LineDecisions" >> dj.Decisions(f"{tmp}/lines", dj.LINE)).runs)
        runs = beam.pvalue.AsList(all_runs | "AllRuns" >> beam.Flatten())
    res = shards("Apply") | "ApplyDedup" >> beam.ParDo(ApplyDecisions(
        b.line_dedup_min_chars, ctx.b.min_chars, dj.NUM_BUCKETS),
        runs=runs).with_outputs(REJECTS, STATS, main="docs")
    fmt = "parquet" if docs.docs_format == "parquet" else "jsonl"
    infos = (res.docs | "KeyDocs" >> beam.Map(keyed_doc)
             | "WriteDocs" >> ShardedWrite(f"{ctx.out}/docs/docs", docs.num_doc_shards, fmt=fmt,
                                           gzip_output=fmt == "jsonl"))
    side_outputs(ctx, STAGE, infos, res[STATS], res[REJECTS])
    r = collect(ctx, p, STAGE, [f"{ctx.out}/docs/_tmp-docs", f"{ctx.out}/dedup/_tmp-clusters",
                                   tmp])
    dedup_dir = f"{ctx.out}/dedup"
    if "://" not in dedup_dir and os.path.isdir(dedup_dir) and not os.listdir(dedup_dir):
        os.rmdir(dedup_dir)  # no near-dup clusters written: leave no empty folder
    if not r:
        return r
    stats = r["stats"]
    for name in ("dedup_groups", "dedup_near_groups"):
        groups = f"{ctx.out}/stages/{name}.json"
        if FileSystems.exists(groups):
            stats.update(beam_util.read_json_file(groups))
            FileSystems.delete([groups])
    return r


STAGE = Stage(
    name="dedup", configs=(DedupConfig, DocsConfig), output_dir="docs",
    outputs=("docs/docs-*", "rejects/dedup-*", "dedup/clusters-*"), rejects="dedup", run=run,
    describe=lambda ctx: f"{ctx.b.num_doc_shards} docs shard(s)")
