"""``python -m pipelines.build``: raw dumps -> cleaned docs -> deduped docs -> TFRecords.

Five Beam pipelines run in sequence:

- ``clean``: ingest + clean -> ``stages/clean/docs-*``;
- ``dedup``: exact, line and near dedup -> ``docs/docs-*`` (the deduped corpus);
- ``segment``: word starts per docs shard -> ``stages/segment/words-*``;
- ``instances``: masked pretraining instances -> sorted runs in ``stages/instances/runs``;
- ``tfrecords``: the runs merged into ``tfrecords/part-*`` shards.

Each writes finished files plus a stage manifest carrying the hash of every
option that shaped it (chained with the upstream stage's hash), so ``--resume``
skips stages whose manifest matches and a changed option reruns exactly the
stages downstream of it (a masking option never re-runs the segmenter; a shard
count only re-merges). ``run(argv)`` is the one entry point for the CLI and tests.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import importlib.metadata
import json
import logging
import os
import posixpath
import re
import sys
import time
from typing import Any, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from corpusflow import __version__
from pipelines import beam_util, cli, integrity, outdir
from pipelines.errors import BuildError, EnvironmentFault, UsageError
from pipelines.options import BuildOptions
from pipelines.rss import PeakRss
from pipelines.sharded_write import MergeRuns, ShardedWrite, cleanup, shard_name, spill_runs
from pipelines import stages

log = logging.getLogger("corpusflow.build")

STAGES = ("clean", "dedup", "segment", "instances", "tfrecords")
_DEPS = ("apache-beam", "jieba", "opencc", "datasketch", "zstandard", "pyarrow", "google-crc32c",
         "ltp-extension", "ltp", "tensorflow-cpu", "tensorflow", "sentencepiece", "tokenizers")


__all__ = ["run", "main", "BuildError", "UsageError", "EnvironmentFault", "EmptyRunError"]


class EmptyRunError(RuntimeError):
    """The run finished but kept nothing (exit 1 unless ``--allow_empty``)."""


# ------------------------------------------------------------------ config
_CLEAN_KEYS = ("input_format", "input_encoding", "max_record_mb", "t2s", "min_chars",
               "max_chars", "min_cjk_ratio", "max_repeated_line_ratio", "pii", "quality_model",
               "min_quality")
_DEDUP_KEYS = ("exact_dedup", "line_dedup", "line_dedup_min_chars", "near_dedup",
               "minhash_threshold", "decontaminate", "docs_format", "num_doc_shards")
# Batch and block sizes and the LTP device are left out: words do not depend on them.
_SEG_KEYS = ("segmenter", "user_dict")
_INST_KEYS = ("do_lower_case", "max_seq_length", "max_predictions_per_seq", "masked_lm_prob",
              "short_seq_prob", "dupe_factor", "masking", "ngram", "ngram_dist", "mask_decision",
              "pair_task", "nsp_window", "random_seed", "token_boundary")
_TF_KEYS = ("num_shards", "tfrecord_gzip")
_ALL_KEYS = _CLEAN_KEYS + _DEDUP_KEYS + _SEG_KEYS + _INST_KEYS + _TF_KEYS
# Key buckets of the instances stage's runs: the merge's parallelism in the
# tfrecords stage. Output bytes do not depend on it, so it is not in any hash.
INSTANCE_BUCKETS = 32


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with FileSystems.open(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def expand_inputs(globs: list[str]) -> list[dict]:
    """Every input file as ``{path, size, mtime, edges_sha256}``.

    A glob that matches nothing, or names a directory, is an error. Files that
    are not regular (FIFOs, devices, sockets) are listed with their ``kind``
    and never opened here: the clean stage rejects them with a reason.
    """
    files: dict[str, tuple[int, Optional[float]]] = {}
    for g in globs:
        if "://" not in g and os.path.isdir(g):
            raise BuildError(f"--input {g!r} is a directory: pass a glob of its files, "
                             f"'{g.rstrip('/')}/*' (or '{g.rstrip('/')}/**' to include subfolders)")
        try:
            res = FileSystems.match([g])[0].metadata_list
        except Exception as e:  # noqa: BLE001 - Beam raises several types here
            raise BuildError(f"--input {g!r}: cannot list files ({e})") from e
        if not res:
            raise BuildError(f"--input {g!r} matched no files")
        for m in res:
            files[m.path] = (m.size_in_bytes, getattr(m, "last_updated_in_seconds", None))
    out = []
    for path, (size, mtime) in sorted(files.items()):
        kind = _file_kind(path)
        if kind != "file":
            out.append({"path": path, "size": size, "kind": kind})
            continue
        try:
            out.append({"path": path, **integrity.fingerprint(path, size, mtime)})
        except OSError as e:
            # Unreadable now: the clean stage rejects it (unreadable_file) with the reason.
            out.append({"path": path, "size": size, "mtime": mtime, "unreadable": str(e)})
    return out


def _file_kind(path: str) -> str:
    """``file`` for a regular file (or any remote object), else what it is."""
    import stat
    if "://" in path:
        return "file"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "file"  # vanished or unreadable: the reader reports it
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character_device"), (stat.S_ISBLK, "block_device")):
        if test(mode):
            return name
    return "special"


def _versions() -> dict[str, str]:
    out = {"corpusflow": __version__, "python": sys.version.split()[0]}
    for d in _DEPS:
        try:
            out[d] = importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _clear_prefix(pattern: str) -> None:
    """Remove leftovers of an earlier run so no stale shard survives."""
    old = [m.path for m in _match(pattern)]
    if old:
        FileSystems.delete(old)


def _progress(enabled: bool, msg: str) -> None:
    if enabled:
        print(f"[corpusflow {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ stages
@dataclasses.dataclass
class Ctx:
    options: PipelineOptions
    b: BuildOptions
    out: str
    runner: Any
    dry_run_report: dict = dataclasses.field(default_factory=dict)


def _pipeline(ctx: Ctx) -> beam.Pipeline:
    return beam.Pipeline(runner=ctx.runner, options=ctx.options)


def _write_rejects(pcoll, ctx: Ctx, name: str):
    """Rejects of a stage, keyed by their own hash: ``rejects/NAME-*.jsonl.gz``."""
    return (pcoll | f"KeyRejects{name}" >> beam.Map(stages.keyed_reject)
            | f"WriteRejects{name}" >> ShardedWrite(f"{ctx.out}/rejects/{name}", 1, fmt="jsonl",
                                                    gzip_output=True))


def run_clean(ctx: Ctx, files: list[dict]) -> dict:
    from corpusflow.clean.cleaner import CleanConfig
    b = ctx.b
    clean_config = CleanConfig(t2s=b.t2s, min_chars=b.min_chars, max_chars=b.max_chars,
                               min_cjk_ratio=b.min_cjk_ratio,
                               max_repeated_line_ratio=b.max_repeated_line_ratio, pii=b.pii,
                               quality_model=b.quality_model, min_quality=b.min_quality)
    prefix = f"{ctx.out}/stages/clean/docs"
    p = _pipeline(ctx)
    res = (p | "InputFiles" >> beam.Create([f["path"] for f in files])
           | "SpreadFiles" >> beam.Reshuffle()
           | "ReadAndClean" >> beam.ParDo(stages.ReadAndClean(
               b.input_format, b.input_encoding, clean_config, int(b.max_record_mb * 2**20),
               progress={"total": 0, "enabled": b.progress}))
           .with_outputs(stages.REJECTS, stages.STATS, main="docs"))
    infos = (res.docs | "KeyDocs" >> beam.Map(stages.keyed_doc)
             | "WriteDocs" >> ShardedWrite(prefix, b.num_doc_shards, fmt="jsonl", gzip_output=True))
    _side_outputs(ctx, "clean", infos, res[stages.STATS], res[stages.REJECTS])
    return _collect(ctx, p, "clean", [f"{ctx.out}/stages/clean/_tmp-docs"])


def _side_outputs(ctx: Ctx, stage: str, infos, stats=None, rejects=None) -> None:
    """A stage's shard list, merged stats and rejects (names shared by every stage)."""
    infos | "ShardList" >> beam_util.WriteJson(f"{ctx.out}/stages/{stage}_shards.json")
    if stats is not None:
        stats | "Stats" >> beam_util.WriteJson(f"{ctx.out}/stages/{stage}_stats.json", merge=True)
    if rejects is not None:
        _write_rejects(rejects, ctx, _REJECTS_NAME[stage])


def _collect(ctx: Ctx, p: beam.Pipeline, stage: str, tmp_dirs: list[str]) -> dict:
    """Run the stage and gather what the driver needs ({} for a --dry_run)."""
    result = _finish(ctx, p, stage)
    if result is None:
        return {}
    if stage in _REJECTS_NAME:
        tmp_dirs = tmp_dirs + [f"{ctx.out}/rejects/_tmp-{_REJECTS_NAME[stage]}"]
    for t in tmp_dirs:
        cleanup(t)
    stats_path = f"{ctx.out}/stages/{stage}_stats.json"
    return {"counters": beam_util.query_counters(result),
            "shards": beam_util.read_json_file(f"{ctx.out}/stages/{stage}_shards.json"),
            "stats": beam_util.read_json_file(stats_path) if FileSystems.exists(stats_path) else {}}


_REJECTS_NAME = {"clean": "clean", "dedup": "dedup", "instances": "pretrain"}


def _finish(ctx: Ctx, p: beam.Pipeline, stage: str):
    """Run a stage's pipeline; None for a Dataflow --dry_run (nothing ran)."""
    result = p.run()
    if _dry_run(ctx):
        proto = getattr(ctx.runner, "proto_pipeline", None)
        ctx.dry_run_report[stage] = {"pipeline_proto_bytes": proto.ByteSize() if proto else None,
                                     "job_json_bytes": len(str(getattr(ctx.runner, "job", "")))}
        return None
    result.wait_until_finish()
    return result


def _dry_run(ctx: Ctx) -> bool:
    return bool(ctx.options.get_all_options().get("dry_run"))


def stage_files(prefix: str, num_shards: int, suffix: str) -> list[str]:
    """A stage's output files: their names depend only on the shard count."""
    return [shard_name(prefix, i, num_shards, suffix) for i in range(num_shards)]


def run_dedup(ctx: Ctx) -> dict:
    """Exact, near and line dedup as a disk-backed join (see ``pipelines.dedup_join``).

    Order: exact duplicates, then (when on) decontamination and near dedup on the
    survivors' whole clean text, then line dedup among the documents still there.
    A near-copy is judged as it arrived and removed whole; line owners are chosen
    only among documents that survive whole, so no line is lost with a removed one.
    """
    from pipelines import dedup_join as dj
    b = ctx.b
    paths = stage_files(f"{ctx.out}/stages/clean/docs", b.num_doc_shards, ".jsonl.gz")
    tmp = f"{ctx.out}/dedup/_tmp"
    p = _pipeline(ctx)

    def shards(label: str):
        return p | f"{label}Files" >> beam.Create(paths) | f"{label}Spread" >> beam.Reshuffle()

    # Whole-document judges (near dedup, decontamination) need line dedup after
    # them; without them, exact and line keys come from one read (a duplicate's
    # owner has the same lines and a smaller record key: line owners are the same).
    whole_first = b.near_dedup or b.decontaminate
    decisions = []
    if b.exact_dedup or (b.line_dedup and not whole_first):
        keys = (shards("Keys") | "ReadForKeys" >> beam.ParDo(stages.ReadDocs())
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
        survivors = shards("Near") | "Survivors" >> beam.ParDo(stages.ApplyDedup(
            b.line_dedup_min_chars, b.min_chars, final=False, num_buckets=dj.NUM_BUCKETS), runs=runs)
        id_runs = [key_runs]
        if b.near_dedup:
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
            clusters = near["clusters"] | "KeyClusters" >> beam.Map(stages.keyed_reject)
            clusters | "WriteClusters" >> ShardedWrite(f"{ctx.out}/dedup/clusters", 1, fmt="jsonl",
                                                       gzip_output=True)
        if b.decontaminate:
            from pipelines.near_dedup import DecontamConfig, Decontaminate
            # Eval sets get the same T->S as the corpus, or Traditional dev files
            # would never match the cleaned (Simplified) documents.
            flagged = survivors | "Decontaminate" >> Decontaminate(
                b.decontaminate, DecontamConfig(t2s=b.t2s))
            id_runs.append(flagged | "DecontamDecisions" >> beam.Map(dj.id_decision(dj.DECONTAM))
                           | "SpillDecontamDecisions" >> dj.spill_decisions(f"{tmp}/id-decisions"))
        whole_runs = id_runs | "WholeDocRuns" >> beam.Flatten()
        all_runs = [whole_runs]
        if b.line_dedup:
            # Line keys of the documents that survive whole: a near-copy or a
            # contaminated document never owns a line, so the document kept in its
            # place loses none of it.
            line_keys = (shards("Lines") | "WholeSurvivors" >> beam.ParDo(stages.ApplyDedup(
                b.line_dedup_min_chars, b.min_chars, final=False, num_buckets=dj.NUM_BUCKETS,
                docs=True), runs=beam.pvalue.AsList(whole_runs))
                | "LineKeys" >> beam.ParDo(dj.DedupKeys(False, True, b.line_dedup_min_chars))
                .with_outputs("lines", main="exact"))
            all_runs.append((line_keys.lines
                             | "LineDecisions" >> dj.Decisions(f"{tmp}/lines", dj.LINE)).runs)
        runs = beam.pvalue.AsList(all_runs | "AllRuns" >> beam.Flatten())
    res = shards("Apply") | "ApplyDedup" >> beam.ParDo(stages.ApplyDedup(
        b.line_dedup_min_chars, b.min_chars, final=True, num_buckets=dj.NUM_BUCKETS),
        runs=runs).with_outputs(stages.REJECTS, stages.STATS, main="docs")
    fmt = "parquet" if b.docs_format == "parquet" else "jsonl"
    infos = (res.docs | "KeyDocs" >> beam.Map(stages.keyed_doc)
             | "WriteDocs" >> ShardedWrite(f"{ctx.out}/docs/docs", b.num_doc_shards, fmt=fmt,
                                           gzip_output=fmt == "jsonl"))
    _side_outputs(ctx, "dedup", infos, res[stages.STATS], res[stages.REJECTS])
    r = _collect(ctx, p, "dedup", [f"{ctx.out}/docs/_tmp-docs", f"{ctx.out}/dedup/_tmp-clusters",
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


def instance_config(b: BuildOptions):
    from corpusflow.pretrain.instances import InstanceConfig
    return InstanceConfig(
        max_seq_length=b.max_seq_length, max_predictions_per_seq=b.max_predictions_per_seq,
        masked_lm_prob=b.masked_lm_prob, short_seq_prob=b.short_seq_prob, masking=b.masking,
        ngram=b.ngram, ngram_dist=b.ngram_dist, pair_task=b.pair_task, dupe_factor=b.dupe_factor,
        seed=b.random_seed, decision=b.mask_decision, token_boundary=b.token_boundary)


def segmenter_options(b: BuildOptions) -> dict:
    opts: dict[str, Any] = {}
    if b.segmenter == "ltp":
        if not b.ltp_model:
            raise BuildError("--segmenter ltp needs --ltp_model DIR")
        opts["model_dir"] = b.ltp_model
        opts["batch_size"] = b.segment_batch_size
        opts["device"] = b.ltp_device
        # Refused by default: a neural model's config.json names code LTP runs.
        opts["trust_model_code"] = bool(b.trust_model_code)
    if b.user_dict:
        opts["user_dict"] = b.user_dict
    return opts


def _workers(options: PipelineOptions) -> int:
    from apache_beam.options.pipeline_options import DirectOptions
    return max(1, options.view_as(DirectOptions).direct_num_workers or 1)


def _docs_paths(ctx: Ctx) -> list[str]:
    b = ctx.b
    return stage_files(f"{ctx.out}/docs/docs", b.num_doc_shards,
                       ".parquet" if b.docs_format == "parquet" else ".jsonl.gz")


def _progress_opts(ctx: Ctx, results: dict) -> dict:
    docs_in = (results.get("dedup") or {}).get("counters", {}).get("dedup:kept", 0)
    return {"total": docs_in, "enabled": ctx.b.progress, "workers": _workers(ctx.options)}


def run_segment(ctx: Ctx, results: dict) -> dict:
    """Docs shard i -> ``stages/segment/words-i-of-N.words`` (word starts, see
    ``corpusflow.segment.starts_file``)."""
    b = ctx.b
    prefix = f"{ctx.out}/stages/segment/words"
    p = _pipeline(ctx)
    res = (p | "DocFiles" >> beam.Create(list(enumerate(_docs_paths(ctx))))
           | "SpreadFiles" >> beam.Reshuffle()
           | "Segment" >> beam.ParDo(stages.SegmentDocs(
               prefix, b.num_doc_shards, b.segmenter, segmenter_options(b),
               b.segment_block_sentences, progress=_progress_opts(ctx, results)))
           .with_outputs(stages.STATS, main="written"))
    infos = (res.written | "GroupWritten" >> beam.GroupByKey()
             | "FinishWords" >> beam.ParDo(stages.FinishWords(prefix, b.num_doc_shards)))
    _side_outputs(ctx, "segment", infos, res[stages.STATS])
    r = _collect(ctx, p, "segment", [])
    if r:
        _clear_prefix(f"{prefix}-*.tmp-*")  # written by bundles that were retried
    return r


def _runs_dir(ctx: Ctx) -> str:
    return f"{ctx.out}/stages/instances/runs"


def run_instances(ctx: Ctx, results: dict) -> dict:
    """Docs + word starts -> serialized examples, spilled as sorted runs that
    stay on disk (listed in the stage's shard list) for the tfrecords stage."""
    b = ctx.b
    words = stage_files(f"{ctx.out}/stages/segment/words", b.num_doc_shards, ".words")
    p = _pipeline(ctx)
    res = (p | "ShardFiles" >> beam.Create(
               [(i, d, w) for i, (d, w) in enumerate(zip(_docs_paths(ctx), words))])
           | "SpreadFiles" >> beam.Reshuffle()
           | "BuildInstances" >> beam.ParDo(stages.BuildInstances(
               b.vocab_file, b.do_lower_case, instance_config(b), b.nsp_window,
               progress=_progress_opts(ctx, results)))
           .with_outputs(stages.REJECTS, stages.STATS, main="examples"))
    infos = (res.examples
             | "SpillRuns" >> spill_runs(posixpath.dirname(_runs_dir(ctx)), INSTANCE_BUCKETS)
             | "RunInfo" >> beam.Map(lambda kv: {"bucket": kv[0], "count": kv[1][1],
                                                 "file": posixpath.basename(kv[1][0]),
                                                 "crc32c": kv[1][2]}))
    _side_outputs(ctx, "instances", infos, res[stages.STATS], res[stages.REJECTS])
    r = _collect(ctx, p, "instances", [])
    if r:
        # Runs of bundles that failed and were retried are not listed: remove them.
        listed = {x["file"] for x in r["shards"]}
        stray = [m.path for m in _match(f"{_runs_dir(ctx)}/*")
                 if posixpath.basename(m.path) not in listed]
        if stray:
            FileSystems.delete(stray)
    return r


def run_write(ctx: Ctx, results: dict) -> dict:
    """The instances stage's runs -> ``tfrecords/part-*`` (merge only)."""
    b = ctx.b
    runs = sorted((x["bucket"], (f"{_runs_dir(ctx)}/{x['file']}", x["count"]))
                  for x in (results.get("instances") or {}).get("shards", []))
    suffix = ".tfrecord" + (".gz" if b.tfrecord_gzip else "")
    tmp = f"{ctx.out}/tfrecords/_tmp-part"
    p = _pipeline(ctx)
    infos = (p | "Runs" >> beam.Create(runs)
             | "WriteShards" >> MergeRuns(f"{ctx.out}/tfrecords/part", b.num_shards, "tfrecord",
                                          b.tfrecord_gzip, suffix, tmp))
    _side_outputs(ctx, "tfrecords", infos)
    return _collect(ctx, p, "tfrecords", [tmp])


def _match(pattern: str) -> list:
    try:
        return FileSystems.match([pattern])[0].metadata_list
    except Exception:  # noqa: BLE001 - nothing there
        return []


_RUN_STAGE = {"clean": None, "dedup": None, "segment": run_segment,
              "instances": run_instances, "tfrecords": run_write}
_OUTPUTS = {
    "clean": ["stages/clean/docs-*", "rejects/clean-*"],
    "dedup": ["docs/docs-*", "rejects/dedup-*", "dedup/clusters-*"],
    "segment": ["stages/segment/words-*"],
    "instances": ["stages/instances/runs/*", "rejects/pretrain-*"],
    "tfrecords": ["tfrecords/part-*"],
}
# Where the files of a stage's shard list live (checked before --resume reuses it).
_OUTPUT_DIR = {"clean": "stages/clean", "dedup": "docs", "segment": "stages/segment",
               "instances": "stages/instances/runs", "tfrecords": "tfrecords"}


# ------------------------------------------------------------------ driver
def _validate(b: BuildOptions) -> None:
    """Options that need more than ranges (those are ``cli.validate``)."""
    if b.stop_after in ("instances", "tfrecords") and not _has_vocab(b):
        raise UsageError(f"--stop_after {b.stop_after} needs a --vocab_file (not 'none')")


def _has_vocab(b: BuildOptions) -> bool:
    return bool(b.vocab_file) and str(b.vocab_file).lower() != "none"


def _vocab_info(b: BuildOptions) -> Optional[dict]:
    if not _has_vocab(b):
        return None
    if not FileSystems.exists(b.vocab_file):
        raise BuildError(f"--vocab_file {b.vocab_file!r} does not exist")
    from corpusflow.tokenize.wordpiece import FullTokenizer
    try:
        tok = FullTokenizer(stages._local_copy(b.vocab_file), do_lower_case=b.do_lower_case)
    except ValueError as e:
        raise BuildError(f"--vocab_file {b.vocab_file!r}: {e}") from e
    return {"path": b.vocab_file, "sha256": file_sha256(b.vocab_file), "size": len(tok.vocab)}


def _segmenter_identity(b: BuildOptions) -> dict:
    from corpusflow.segment.registry import make_segmenter
    try:
        seg = make_segmenter(b.segmenter, **segmenter_options(b))
        if hasattr(seg, "validate"):
            seg.validate()
        # LTP's validate() already proved the model loads (in a child process for
        # perceptrons) and released it. Loading it here again would keep ~300 MB in
        # the driver, which on a local run is also the worker of every stage.
        if b.segmenter != "ltp":
            seg.setup()  # cheap for jieba; proves a user dictionary parses
        return seg.identity()
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise BuildError(f"--segmenter {b.segmenter}: {e}") from e


def _stage_manifest_path(out: str, stage: str) -> str:
    return f"{out}/stages/{stage}.json"


def _load_stage(out: str, stage: str, config_hash: str) -> tuple[Optional[dict], str]:
    """A finished stage's manifest if it matches ``config_hash``; else None and why not.

    An unreadable manifest (a run killed while writing one, before writes became
    atomic, or a damaged disk) is named and treated as "not finished".
    """
    path = _stage_manifest_path(out, stage)
    if not FileSystems.exists(path):
        return None, "not finished"
    try:
        m = beam_util.read_json_file(path)
        if not isinstance(m, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as e:
        return None, f"its manifest {path} is unreadable ({type(e).__name__}: {e}); rerun"
    if m.get("config_hash") != config_hash:
        return None, "options or upstream output changed"
    return m, ""


def _outputs_check(out: str, stage: str, m: dict) -> str:
    """Why the stage's recorded output files cannot be reused ("" when they can).

    Every file of the shard list must be there with its recorded size and CRC32C
    (computed when it was written); a file recorded without a checksum (written
    by an older version) is checked by size only.
    """
    found = {posixpath.basename(x.path): x.size_in_bytes
             for x in _match(f"{out}/{_OUTPUT_DIR[stage]}/*")}
    for s in m.get("shards", []):
        name = s["file"]
        if name not in found:
            return f"{_OUTPUT_DIR[stage]}/{name} is missing"
        if "bytes" in s and found[name] != s["bytes"]:
            return f"{_OUTPUT_DIR[stage]}/{name} has {found[name]} bytes, {s['bytes']} recorded"
        if s.get("crc32c"):
            crc = integrity.file_crc32c(f"{out}/{_OUTPUT_DIR[stage]}/{name}")
            if crc != s["crc32c"]:
                return (f"{_OUTPUT_DIR[stage]}/{name} is damaged (crc32c {crc}, "
                        f"{s['crc32c']} recorded)")
    return ""


def _inputs_check(m: dict, files: list[dict]) -> str:
    """Why the clean stage's inputs no longer match their recorded fingerprints ("" if they do)."""
    old = {f["path"]: f for f in m.get("input_fingerprints", [])}
    if not old:
        return ""  # recorded by an older version: the config hash covers paths and sizes
    for f in files:
        changes = integrity.fingerprint_changes(old.get(f["path"], {}), f)
        if changes:
            return f"input {f['path']} changed since it was cleaned ({', '.join(changes)})"
    return ""


def resume_plan(out: str, todo: tuple, hashes: dict, files: Optional[list[dict]] = None,
                say=None) -> dict[str, dict]:
    """The finished stages ``--resume`` reuses: ``{stage: its manifest}``.

    A stage is reused when its manifest matches its config hash and so do all
    upstream ones, its inputs are unchanged (clean: the raw files' fingerprints),
    and either its output files are all there with their checksums or a later
    reused stage already consumed them (the instances runs are removed after the
    write). Everything after the last reusable stage reruns; ``say`` is told why.
    """
    manifests: dict[str, dict] = {}
    why: dict[str, str] = {}
    last = -1
    for i, stage in enumerate(todo):
        m, reason = _load_stage(out, stage, hashes[stage])
        if m is None:
            why[stage] = reason
            break
        if stage == "clean" and files is not None:
            reason = _inputs_check(m, files)
            if reason:
                why[stage] = reason
                break
        manifests[stage] = m
        reason = _outputs_check(out, stage, m)
        if reason:
            why[stage] = reason
        else:
            last = i
    reuse = {s: manifests[s] for s in todo[: last + 1]}
    if say is not None:
        rerun = [s for s in todo if s not in reuse]
        if rerun:
            reasons = [f"{s}: {why[s]}" for s in rerun if s in why]
            say(f"stage {rerun[0]}: rerun ({'; '.join(reasons) or 'an upstream stage reruns'})")
    return reuse


def summarize_counts(counters: dict[str, int], last_doc_stage: str) -> dict[str, int]:
    """The manifest's ``counts``: read = kept + filtered + duplicates + rejected."""
    def total(prefixes):
        return sum(v for k, v in counters.items() if k.startswith(prefixes))
    kept = counters.get("dedup:kept", 0) if last_doc_stage == "dedup" else counters.get("clean:kept", 0)
    stages_ = ("read:", "clean:") + (("dedup:",) if last_doc_stage == "dedup" else ())
    return {
        "read": counters.get("read:records", 0),
        "kept": kept,
        "filtered": total(tuple(f"{s}filtered:" for s in stages_)),
        "duplicates": total(("dedup:duplicate:",)) if last_doc_stage == "dedup" else 0,
        "rejected": total(tuple(f"{s}rejected:" for s in stages_)),
    }


def _parse(argv: Optional[list[str]]) -> tuple[PipelineOptions, BuildOptions]:
    """Strict parsing (nothing discarded), absolute paths, every range checked."""
    argv = cli.parse(argv)
    options = PipelineOptions(argv)
    options.view_as(SetupOptions).save_main_session = False
    b = options.view_as(BuildOptions)
    cli.validate(b)
    cli.absolutize(b)
    _validate(b)
    return options, b


def _stage_hashes(b: BuildOptions, files: list[dict], seg_id: Optional[dict],
                  vocab: Optional[dict]) -> dict[str, str]:
    opts = b.get_all_options()
    clean_cfg = {k: opts[k] for k in _CLEAN_KEYS}
    if b.quality_model:  # the model's bytes, not only its path, shape the clean stage
        from corpusflow.quality.model import model_digest
        clean_cfg["quality_model"] = [b.quality_model, model_digest(b.quality_model)]
    # Paths and sizes: an edited input with the same size is caught by its
    # fingerprint (resume_plan), which names what changed.
    clean_cfg["inputs"] = [{"path": f["path"], "size": f["size"]} for f in files]
    hashes = {"clean": _hash(clean_cfg)}
    hashes["dedup"] = _hash([hashes["clean"], {k: opts[k] for k in _DEDUP_KEYS}])
    hashes["segment"] = _hash([hashes["dedup"], {k: opts[k] for k in _SEG_KEYS}, seg_id])
    hashes["instances"] = _hash([hashes["segment"], {k: opts[k] for k in _INST_KEYS}, vocab])
    hashes["tfrecords"] = _hash([hashes["instances"], {k: opts[k] for k in _TF_KEYS}])
    return hashes


def _clear_later_stages(out: str, todo: tuple) -> None:
    """A resumed run that stops earlier than the last one leaves none of its later files."""
    for stage in STAGES[len(todo):]:
        for pattern in _OUTPUTS[stage]:
            _clear_prefix(f"{out}/{pattern}")
        for path in (_stage_manifest_path(out, stage), f"{out}/stages/{stage}_shards.json",
                     f"{out}/stages/{stage}_stats.json", f"{out}/{_OUTPUT_DIR[stage]}"):
            if FileSystems.exists(path):
                FileSystems.delete([path])
    if "instances" not in todo:
        runs = f"{out}/stages/instances"
        if FileSystems.exists(runs):
            FileSystems.delete([runs])
    for name in ("manifest.json", "stats.json", "report.html"):
        if FileSystems.exists(f"{out}/{name}"):
            FileSystems.delete([f"{out}/{name}"])


def run(argv: Optional[list[str]] = None) -> dict:
    """Run the build; returns the manifest (also written to ``OUTPUT/manifest.json``).

    Raises ``BuildError`` (bad options or inputs, before any work),
    ``EnvironmentFault`` (disk full, unwritable output ...) and ``EmptyRunError``
    (nothing kept, without ``--allow_empty``; the manifest is written first).
    """
    options, b = _parse(argv)
    out = b.output.rstrip("/")
    outdir.check_not_input(out, b.input + list(b.decontaminate or []))
    files = expand_inputs(b.input)
    vocab = _vocab_info(b)
    last = b.stop_after or ("tfrecords" if vocab else "dedup")
    todo = STAGES[: STAGES.index(last) + 1]
    seg_id = _segmenter_identity(b) if "segment" in todo else None
    hashes = _stage_hashes(b, files, seg_id, vocab)
    ctx = Ctx(options, b, out, beam_util.make_runner(options))
    if _dry_run(ctx):
        return _run_stages(ctx, files, todo, hashes, vocab, seg_id, {})
    lock = outdir.BuildLock(out)
    try:
        replaced = lock.acquire()
    except OSError as e:
        raise EnvironmentFault(_fault_message(e, out)) from e
    try:
        if replaced:
            _progress(b.progress, f"took over a stale lock of pid {replaced.get('pid')} "
                                  f"(started {replaced.get('started', '?')}; that process is gone)")
        outdir.claim(out, hashes, b.resume, b.overwrite)
        if b.resume:
            _clear_later_stages(out, todo)
        reuse = resume_plan(out, todo, hashes, files,
                            say=lambda m: _progress(b.progress, m)) if b.resume else {}
        return _run_stages(ctx, files, todo, hashes, vocab, seg_id, reuse)
    except OSError as e:
        raise EnvironmentFault(_fault_message(e, out)) from e
    finally:
        lock.release()


_FAULT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT,
                 errno.EFBIG, errno.EIO}


def _fault_message(e: OSError, out: str) -> str:
    path = e.filename or out
    return f"cannot write {path}: {e.strerror or e} (errno {e.errno}); fix it and rerun with --resume"


def _run_stages(ctx: Ctx, files: list[dict], todo: tuple, hashes: dict, vocab: Optional[dict],
                seg_id: Optional[dict], reuse: dict) -> dict:
    b, out = ctx.b, ctx.out
    last = todo[-1]
    results: dict[str, dict] = {}
    for stage in todo:
        if stage in reuse:
            _progress(b.progress, f"stage {stage}: up to date, skipped (--resume)")
            results[stage] = reuse[stage]
            continue
        if not _dry_run(ctx):
            for pattern in _OUTPUTS[stage]:
                _clear_prefix(f"{out}/{pattern}")
        started = time.time()
        cpu0 = time.process_time()
        _progress(b.progress, f"stage {stage}: running on " + (
            f"{len(files)} input file(s)" if stage == "clean" else f"{b.num_doc_shards} docs shard(s)"))
        with PeakRss() as rss:
            try:
                if stage == "clean":
                    r = run_clean(ctx, files)
                elif stage == "dedup":
                    r = run_dedup(ctx)
                else:
                    r = _RUN_STAGE[stage](ctx, results)
            except Exception as e:  # noqa: BLE001 - runners wrap worker errors; find the OS one
                fault = _os_error_in(e)
                if fault is None:
                    raise
                _remove_temps(out)
                raise EnvironmentFault(_fault_message(fault, out)) from e
        if _dry_run(ctx):
            _progress(b.progress, f"stage {stage}: job graph built (--dry_run), not run")
            results[stage] = {}
            continue
        r["config_hash"] = hashes[stage]
        r["wall_seconds"] = round(time.time() - started, 3)
        r["driver_cpu_seconds"] = round(time.process_time() - cpu0, 3)
        r["peak_rss_mb"] = rss.peak_mb
        if stage == "clean":
            r["input_fingerprints"] = files
        beam_util.write_json_file(_stage_manifest_path(out, stage), r)
        results[stage] = r
        if stage == "tfrecords" and not b.keep_instance_runs:
            # The runs are as large as the TFRecords; only a later change of
            # --num_shards/--tfrecord_gzip would read them again (that rebuilds
            # them). Removed only now that the write's manifest is on disk.
            runs = posixpath.dirname(_runs_dir(ctx))
            if FileSystems.exists(runs):
                FileSystems.delete([runs])
        _progress(b.progress, f"stage {stage}: done in {r['wall_seconds']:.1f}s; "
                  + ", ".join(f"{k}={v}" for k, v in sorted(r["counters"].items())
                              if k.count(":") == 1 or k.startswith(("read:rejected", "clean:filtered"))))

    if _dry_run(ctx):
        return {"dry_run": True, "stages": ctx.dry_run_report, "config_hash": hashes[last]}
    counters: dict[str, int] = {}
    for stage in todo:
        for k, v in results[stage]["counters"].items():
            counters[k] = counters.get(k, 0) + v
    doc_stage = "dedup" if "dedup" in todo else "clean"
    opts = b.get_all_options()
    manifest: dict[str, Any] = {
        "corpusflow_version": __version__,
        "created_unix": int(time.time()),
        "config": {k: v for k, v in opts.items() if k in set(_ALL_KEYS)
                   | {"input", "output", "vocab_file", "ltp_model", "stop_after"}},
        "config_hash": hashes[last],
        "stage_hashes": {s: hashes[s] for s in todo},
        "versions": _versions(),
        "inputs": files,
        "counts": summarize_counts(counters, doc_stage),
        "counters": dict(sorted(counters.items())),
        "docs": {"format": b.docs_format,
                 "shards": sorted(results[doc_stage]["shards"], key=lambda s: s["file"])},
    }
    if "segment" in todo:
        manifest["segmenter"] = seg_id
    if "tfrecords" in todo:
        manifest["tfrecords"] = tfrecords_manifest(b, vocab, results, counters)
    beam_util.write_json_file(f"{out}/manifest.json", manifest)
    beam_util.write_json_file(f"{out}/stats.json", build_stats(manifest, results))
    c = manifest["counts"]
    _progress(b.progress, f"done: read={c['read']} kept={c['kept']} filtered={c['filtered']} "
              f"duplicates={c['duplicates']} rejected={c['rejected']} -> {out}/manifest.json")
    empty = _empty_reason(manifest)
    if empty and not b.allow_empty:
        raise EmptyRunError(f"{empty}; see {out}/rejects/ (pass --allow_empty if this is wanted)")
    return manifest


def _empty_reason(manifest: dict) -> str:
    """Why a finished run counts as empty ("" when it kept something)."""
    c = manifest["counts"]
    if c["kept"] == 0:
        reasons = sorted(((-v, k) for k, v in manifest["counters"].items()
                          if k.count(":") == 2 and k.split(":")[1] in
                          ("rejected", "filtered", "duplicate")))
        top = ", ".join(f"{k}={-v}" for v, k in reasons[:5]) or "no records read"
        return f"the run kept no document (read {c['read']}: {top})"
    tf = manifest.get("tfrecords")
    if tf is not None and tf.get("num_instances", 0) == 0:
        return f"the run kept {c['kept']} document(s) but made no pretraining instance"
    return ""


def _os_error_in(e: BaseException) -> Optional[OSError]:
    """The disk/permission error behind a runner's exception, if that is what it was.

    Beam re-raises a worker's exception wrapped (sometimes only as text), so the
    cause chain is walked and, failing that, the message is read.
    """
    seen = set()
    texts = []
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _FAULT_ERRNOS:
            return e
        texts.append(str(e))
        e = e.__cause__ or e.__context__
    return _fault_in_text("\n".join(texts))


def _fault_in_text(text: str) -> Optional[OSError]:
    m = re.search(r"\[Errno (\d+)\] ([^:'\n]+)(?:: '([^'\n]+)')?", text)
    if m and int(m.group(1)) in _FAULT_ERRNOS:
        return OSError(int(m.group(1)), m.group(2), m.group(3))
    return None


def _remove_temps(out: str) -> None:
    """Temp files a failed stage left (``_tmp-*`` folders, ``*.tmp-*`` files)."""
    if "://" in out:
        return
    for root, dirs, names in os.walk(out, topdown=True):
        for d in list(dirs):
            if d.startswith("_tmp") or d == "runs" and root.endswith("instances"):
                import shutil
                shutil.rmtree(os.path.join(root, d), ignore_errors=True)
                dirs.remove(d)
        for n in names:
            if ".tmp-" in n:
                try:
                    os.remove(os.path.join(root, n))
                except OSError:
                    pass


def build_stats(manifest: dict, results: dict[str, dict]) -> dict:
    """``stats.json``: what each stage computed with Beam combiners, in one place."""
    stats: dict[str, Any] = {"counts": manifest["counts"], "stages": {}}
    for stage, r in results.items():
        s = dict(r.get("stats") or {})
        s["wall_seconds"] = r.get("wall_seconds")
        s["peak_rss_mb"] = r.get("peak_rss_mb")
        if stage == "instances":
            # Thousands of run files at scale: their totals, not each one.
            runs = r.get("shards", [])
            s["runs"] = {"files": len(runs), "count": sum(x["count"] for x in runs),
                         "buckets": len({x["bucket"] for x in runs})}
        else:
            s["shards"] = {x["file"]: {"count": x["count"], "bytes": x["bytes"]}
                           for x in sorted(r.get("shards", []), key=lambda x: x["file"])}
        stats["stages"][stage] = s
    reasons: dict[str, int] = {}
    for k, v in manifest["counters"].items():
        parts = k.split(":")
        if len(parts) == 3 and parts[1] in ("rejected", "filtered", "duplicate"):
            reasons[k] = v
    stats["reasons"] = reasons
    toks = (results.get("instances", {}).get("stats") or {}).get("tokens") or {}
    if toks.get("total"):
        stats["vocab"] = {"tokens": toks["total"], "unk_tokens": toks.get("unk", 0),
                          "unk_rate": round(toks.get("unk", 0) / toks["total"], 6)}
    return stats


def tfrecords_manifest(b: BuildOptions, vocab: dict, results: dict[str, dict],
                       counters: dict[str, int]) -> dict:
    """The manifest's ``tfrecords`` section: schema, shards and instance statistics."""
    from corpusflow.pretrain.example import feature_spec
    spec = feature_spec(b.max_seq_length, b.max_predictions_per_seq, token_boundary=b.token_boundary)
    shards = [{"file": s["file"], "count": s["count"], "bytes": s["bytes"]}
              for s in sorted(results["tfrecords"]["shards"], key=lambda s: s["file"])]
    stats = results["instances"].get("stats") or {}
    seg_stats = results["segment"].get("stats") or {}
    return {
        "max_seq_length": b.max_seq_length,
        "max_predictions_per_seq": b.max_predictions_per_seq,
        "masked_lm_prob": b.masked_lm_prob,
        "short_seq_prob": b.short_seq_prob,
        "dupe_factor": b.dupe_factor,
        "vocab_file": vocab["path"],
        "vocab_sha256": vocab["sha256"],
        "vocab_size": vocab["size"],
        "do_lower_case": b.do_lower_case,
        "num_instances": sum(s["count"] for s in shards),
        "shards": shards,
        "compression": "GZIP" if b.tfrecord_gzip else "",
        "feature_spec": {k: {"dtype": d, "shape": s} for k, (d, s) in spec.items()},
        "masking": {"strategy": b.masking, "ngram": b.ngram, "ngram_dist": b.ngram_dist,
                    "decision": b.mask_decision},
        "pair_task": b.pair_task,
        "nsp_window": b.nsp_window,
        "token_boundary": b.token_boundary,
        "seed": b.random_seed,
        "label_balance": stats.get("label", {}),
        "masked_tokens_histogram": stats.get("masked_per_instance", {}),
        "tokens_per_instance_histogram": stats.get("tokens_per_instance", {}),
        "sentence_chars_histogram": seg_stats.get("sentence_chars", {}),
        "word_fallbacks": {k: v for k, v in counters.items()
                           if k.startswith(("mask:fallback", "segment:fallback"))},
    }


def main(argv: Optional[list[str]] = None) -> int:
    """The CLI: 0 done, 1 a fault or an empty run, 2 bad options or inputs."""
    logging.basicConfig(level=logging.WARNING)
    # Beam logs a failed bundle's traceback at ERROR before re-raising it; the CLI
    # reports a fault in one line instead, and any other error still propagates
    # with its traceback.
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    try:
        run(argv if argv is not None else sys.argv[1:])
    except BuildError as e:
        print(f"corpusflow: error: {e}", file=sys.stderr)
        return 2
    except (EnvironmentFault, EmptyRunError) as e:
        print(f"corpusflow: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if e.errno not in _FAULT_ERRNOS:
            raise
        print(f"corpusflow: error: {_fault_message(e, '')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
