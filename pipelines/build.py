"""``python -m pipelines.build``: raw dumps -> cleaned docs -> deduped docs -> TFRecords.

Three Beam pipelines run in sequence (``clean``, ``dedup``, ``tfrecords``). Each
writes finished files plus a stage manifest carrying the hash of every option
that shaped it (chained with the upstream stage's hash), so ``--resume`` skips
stages whose manifest matches and a changed option reruns exactly the stages
downstream of it. ``run(argv)`` is the one entry point for the CLI and tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import re
import sys
import time
from typing import Any, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from corpusflow import __version__
from pipelines import beam_util
from pipelines.options import BuildOptions
from pipelines.rss import PeakRss
from pipelines.sharded_write import ShardedWrite, cleanup, shard_name
from pipelines import stages

log = logging.getLogger("corpusflow.build")

STAGES = ("clean", "dedup", "tfrecords")
_DEPS = ("apache-beam", "jieba", "opencc", "datasketch", "zstandard", "pyarrow", "google-crc32c",
         "ltp-extension", "ltp", "tensorflow-cpu", "tensorflow", "sentencepiece", "tokenizers")


class BuildError(ValueError):
    """A problem with the inputs or options, reported before any work starts."""


# ------------------------------------------------------------------ config
_CLEAN_KEYS = ("input_format", "input_encoding", "max_record_mb", "t2s", "min_chars",
               "max_chars", "min_cjk_ratio", "max_repeated_line_ratio")
_DEDUP_KEYS = ("exact_dedup", "line_dedup", "line_dedup_min_chars", "near_dedup",
               "minhash_threshold", "decontaminate", "docs_format", "num_doc_shards")
_TF_KEYS = ("do_lower_case", "max_seq_length", "max_predictions_per_seq", "masked_lm_prob",
            "short_seq_prob", "dupe_factor", "masking", "ngram", "ngram_dist", "mask_decision",
            "pair_task", "nsp_window", "random_seed", "num_shards", "segmenter", "user_dict",
            "token_boundary", "tfrecord_gzip")


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with FileSystems.open(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def expand_inputs(globs: list[str]) -> list[dict]:
    """Every input file as ``{path, size}``; a glob that matches nothing is an error."""
    files: dict[str, int] = {}
    for g in globs:
        try:
            res = FileSystems.match([g])[0].metadata_list
        except Exception as e:  # noqa: BLE001 - Beam raises several types here
            raise BuildError(f"--input {g!r}: cannot list files ({e})") from e
        if not res:
            raise BuildError(f"--input {g!r} matched no files")
        for m in res:
            files[m.path] = m.size_in_bytes
    return [{"path": p, "size": s} for p, s in sorted(files.items())]


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
    try:
        old = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    except Exception:  # noqa: BLE001 - nothing there
        old = []
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
    return (pcoll | f"KeyRejects{name}" >> beam.Map(stages.keyed_reject)
            | f"WriteRejects{name}" >> ShardedWrite(f"{ctx.out}/rejects/{name}", 1, fmt="jsonl",
                                                    gzip_output=True))


def run_clean(ctx: Ctx, files: list[dict]) -> dict:
    from corpusflow.clean.cleaner import CleanConfig
    b = ctx.b
    clean_config = CleanConfig(t2s=b.t2s, min_chars=b.min_chars, max_chars=b.max_chars,
                               min_cjk_ratio=b.min_cjk_ratio,
                               max_repeated_line_ratio=b.max_repeated_line_ratio)
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


def _side_outputs(ctx: Ctx, stage: str, infos, stats, rejects) -> None:
    """A stage's shard list, merged stats and rejects (names shared by every stage)."""
    infos | "ShardList" >> beam_util.WriteJson(f"{ctx.out}/stages/{stage}_shards.json")
    stats | "Stats" >> beam_util.WriteJson(f"{ctx.out}/stages/{stage}_stats.json", merge=True)
    _write_rejects(rejects, ctx, _REJECTS_NAME[stage])


def _collect(ctx: Ctx, p: beam.Pipeline, stage: str, tmp_dirs: list[str]) -> dict:
    """Run the stage and gather what the driver needs ({} for a --dry_run)."""
    result = _finish(ctx, p, stage)
    if result is None:
        return {}
    for t in tmp_dirs + [f"{ctx.out}/rejects/_tmp-{_REJECTS_NAME[stage]}"]:
        cleanup(t)
    return {"counters": beam_util.query_counters(result),
            "shards": beam_util.read_json_file(f"{ctx.out}/stages/{stage}_shards.json"),
            "stats": beam_util.read_json_file(f"{ctx.out}/stages/{stage}_stats.json")}


_REJECTS_NAME = {"clean": "clean", "dedup": "dedup", "tfrecords": "pretrain"}


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
    """Exact, line and near dedup as a disk-backed join (see ``pipelines.dedup_join``)."""
    from pipelines import dedup_join as dj
    b = ctx.b
    paths = stage_files(f"{ctx.out}/stages/clean/docs", b.num_doc_shards, ".jsonl.gz")
    tmp = f"{ctx.out}/dedup/_tmp"
    p = _pipeline(ctx)

    def shards(label: str):
        return p | f"{label}Files" >> beam.Create(paths) | f"{label}Spread" >> beam.Reshuffle()

    decisions = []
    if b.exact_dedup or b.line_dedup:
        keys = (shards("Keys") | "ReadForKeys" >> beam.ParDo(stages.ReadDocs())
                | "DedupKeys" >> beam.ParDo(dj.DedupKeys(b.exact_dedup, b.line_dedup,
                                                         b.line_dedup_min_chars))
                .with_outputs("lines", main="exact"))
        if b.exact_dedup:
            exact = keys.exact | "ExactDecisions" >> dj.Decisions(f"{tmp}/exact", dj.EXACT)
            decisions.append(exact.runs)
            (exact[dj.SIZES] | "ExactSizes" >> beam.Map(lambda kv: (str(kv[0]), kv[1]))
             | "ExactSizeHist" >> beam.CombinePerKey(sum)
             | "ExactHistList" >> beam.Map(lambda kv: {"exact_group_sizes": {kv[0]: kv[1]}})
             | "ExactHist" >> beam_util.WriteJson(f"{ctx.out}/stages/dedup_groups.json", merge=True))
        if b.line_dedup:
            decisions.append((keys.lines | "LineDecisions" >> dj.Decisions(f"{tmp}/lines", dj.LINE))
                             .runs)
    key_runs = (decisions or [p | "NoDecisions" >> beam.Create([])]) | "KeyRuns" >> beam.Flatten()
    runs = beam.pvalue.AsList(key_runs)
    if b.near_dedup or b.decontaminate:
        survivors = shards("Near") | "Survivors" >> beam.ParDo(stages.ApplyDedup(
            b.line_dedup_min_chars, b.min_chars, final=False, num_buckets=dj.NUM_BUCKETS), runs=runs)
        by_id = []
        if b.near_dedup:
            from pipelines.near_dedup import NearDedup, NearDedupConfig
            kw = {}
            if b.minhash_threshold is not None:
                kw["threshold"] = b.minhash_threshold
            near = survivors | "NearDedup" >> NearDedup(NearDedupConfig(**kw))
            by_id.append(near["dropped"] | "NearDecisions" >> beam.Map(dj.id_decision(dj.NEAR)))
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
            by_id.append(flagged | "DecontamDecisions" >> beam.Map(dj.id_decision(dj.DECONTAM)))
        id_runs = (by_id | "AllIdDecisions" >> beam.Flatten()
                   | "SpillIdDecisions" >> dj.spill_decisions(f"{tmp}/id-decisions"))
        runs = beam.pvalue.AsList((key_runs, id_runs) | "AllRuns" >> beam.Flatten())
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
    if b.user_dict:
        opts["user_dict"] = b.user_dict
    return opts


def _workers(options: PipelineOptions) -> int:
    from apache_beam.options.pipeline_options import DirectOptions
    return max(1, options.view_as(DirectOptions).direct_num_workers or 1)


def run_tfrecords(ctx: Ctx, docs_in: int) -> dict:
    b = ctx.b
    paths = stage_files(f"{ctx.out}/docs/docs", b.num_doc_shards,
                        ".parquet" if b.docs_format == "parquet" else ".jsonl.gz")
    p = _pipeline(ctx)
    res = (p | "DocFiles" >> beam.Create(paths) | "SpreadFiles" >> beam.Reshuffle()
           | "BuildInstances" >> beam.ParDo(stages.BuildInstances(
               b.vocab_file, b.do_lower_case, b.segmenter, segmenter_options(b), instance_config(b),
               b.nsp_window, b.segment_block_sentences,
               progress={"total": docs_in, "enabled": b.progress,
                         "workers": _workers(ctx.options)})).with_outputs(
                   stages.REJECTS, stages.STATS, main="examples"))
    infos = res.examples | "WriteShards" >> ShardedWrite(
        f"{ctx.out}/tfrecords/part", b.num_shards, fmt="tfrecord", gzip_output=b.tfrecord_gzip)
    _side_outputs(ctx, "tfrecords", infos, res[stages.STATS], res[stages.REJECTS])
    return _collect(ctx, p, "tfrecords", [f"{ctx.out}/tfrecords/_tmp-part"])


_OUTPUTS = {
    "clean": ["stages/clean/docs-*", "rejects/clean-*"],
    "dedup": ["docs/docs-*", "rejects/dedup-*", "dedup/clusters-*"],
    "tfrecords": ["tfrecords/part-*", "rejects/pretrain-*"],
}


# ------------------------------------------------------------------ driver
def _validate(b: BuildOptions) -> None:
    if not b.input:
        raise BuildError("--input GLOB is required")
    if not b.output:
        raise BuildError("--output DIR is required")
    if b.max_seq_length < 8 or b.max_predictions_per_seq < 1:
        raise BuildError("--max_seq_length must be >= 8 and --max_predictions_per_seq >= 1")
    if b.num_shards < 1 or b.num_doc_shards < 1 or b.dupe_factor < 1:
        raise BuildError("--num_shards, --num_doc_shards and --dupe_factor must be >= 1")
    if b.stop_after == "tfrecords" and not b.vocab_file:
        raise BuildError("--stop_after tfrecords needs --vocab_file")
    if not re.fullmatch(r"cpu|auto|cuda(:\d+)?", b.ltp_device or ""):
        raise BuildError(f"--ltp_device must be cpu, cuda, cuda:N or auto, got {b.ltp_device!r}")
    if b.segment_batch_size < 1 or b.segment_block_sentences < 1:
        raise BuildError("--segment_batch_size and --segment_block_sentences must be >= 1")


def _vocab_info(b: BuildOptions) -> Optional[dict]:
    if not b.vocab_file:
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


def _load_stage(out: str, stage: str, config_hash: str) -> Optional[dict]:
    path = _stage_manifest_path(out, stage)
    if not FileSystems.exists(path):
        return None
    m = beam_util.read_json_file(path)
    return m if m.get("config_hash") == config_hash else None


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


def run(argv: Optional[list[str]] = None) -> dict:
    """Run the build; returns the manifest (also written to ``OUTPUT/manifest.json``)."""
    options = PipelineOptions(argv)
    options.view_as(SetupOptions).save_main_session = False
    b = options.view_as(BuildOptions)
    _validate(b)
    out = b.output.rstrip("/")
    files = expand_inputs(b.input)
    vocab = _vocab_info(b)
    last = b.stop_after or ("tfrecords" if vocab else "dedup")
    todo = STAGES[: STAGES.index(last) + 1]
    seg_id = _segmenter_identity(b) if "tfrecords" in todo else None

    ctx = Ctx(options, b, out, beam_util.make_runner(options))
    opts = b.get_all_options()
    clean_cfg = {k: opts[k] for k in _CLEAN_KEYS}
    clean_cfg["inputs"] = files
    hashes = {"clean": _hash(clean_cfg)}
    hashes["dedup"] = _hash([hashes["clean"], {k: opts[k] for k in _DEDUP_KEYS}])
    hashes["tfrecords"] = _hash([hashes["dedup"], {k: opts[k] for k in _TF_KEYS}, vocab, seg_id])

    results: dict[str, dict] = {}
    for stage in todo:
        prev = _load_stage(out, stage, hashes[stage]) if b.resume else None
        if prev is not None:
            _progress(b.progress, f"stage {stage}: up to date, skipped (--resume)")
            results[stage] = prev
            continue
        if not _dry_run(ctx):
            for pattern in _OUTPUTS[stage]:
                _clear_prefix(f"{out}/{pattern}")
        started = time.time()
        cpu0 = time.process_time()
        _progress(b.progress, f"stage {stage}: running on {len(files)} input file(s)")
        with PeakRss() as rss:
            if stage == "clean":
                r = run_clean(ctx, files)
            elif stage == "dedup":
                r = run_dedup(ctx)
            else:
                r = run_tfrecords(ctx, (results.get("dedup") or {}).get("counters", {})
                                  .get("dedup:kept", 0))
        if _dry_run(ctx):
            _progress(b.progress, f"stage {stage}: job graph built (--dry_run), not run")
            results[stage] = {}
            continue
        r["config_hash"] = hashes[stage]
        r["wall_seconds"] = round(time.time() - started, 3)
        r["driver_cpu_seconds"] = round(time.process_time() - cpu0, 3)
        r["peak_rss_mb"] = rss.peak_mb
        beam_util.write_json_file(_stage_manifest_path(out, stage), r)
        results[stage] = r
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
    manifest: dict[str, Any] = {
        "corpusflow_version": __version__,
        "created_unix": int(time.time()),
        "config": {k: v for k, v in opts.items() if k in set(_CLEAN_KEYS + _DEDUP_KEYS + _TF_KEYS)
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
    if "tfrecords" in todo:
        manifest["segmenter"] = seg_id
        manifest["tfrecords"] = tfrecords_manifest(b, vocab, results["tfrecords"])
    beam_util.write_json_file(f"{out}/manifest.json", manifest)
    beam_util.write_json_file(f"{out}/stats.json", build_stats(manifest, results))
    c = manifest["counts"]
    _progress(b.progress, f"done: read={c['read']} kept={c['kept']} filtered={c['filtered']} "
              f"duplicates={c['duplicates']} rejected={c['rejected']} -> {out}/manifest.json")
    return manifest


def build_stats(manifest: dict, results: dict[str, dict]) -> dict:
    """``stats.json``: what each stage computed with Beam combiners, in one place."""
    stats: dict[str, Any] = {"counts": manifest["counts"], "stages": {}}
    for stage, r in results.items():
        s = dict(r.get("stats") or {})
        s["wall_seconds"] = r.get("wall_seconds")
        s["peak_rss_mb"] = r.get("peak_rss_mb")
        s["shards"] = {x["file"]: {"count": x["count"], "bytes": x["bytes"]}
                       for x in sorted(r.get("shards", []), key=lambda x: x["file"])}
        stats["stages"][stage] = s
    reasons: dict[str, int] = {}
    for k, v in manifest["counters"].items():
        parts = k.split(":")
        if len(parts) == 3 and parts[1] in ("rejected", "filtered", "duplicate"):
            reasons[k] = v
    stats["reasons"] = reasons
    tf = results.get("tfrecords", {}).get("stats") or {}
    toks = tf.get("tokens") or {}
    if toks.get("total"):
        stats["vocab"] = {"tokens": toks["total"], "unk_tokens": toks.get("unk", 0),
                          "unk_rate": round(toks.get("unk", 0) / toks["total"], 6)}
    return stats


def tfrecords_manifest(b: BuildOptions, vocab: dict, r: dict) -> dict:
    from corpusflow.pretrain.example import feature_spec
    spec = feature_spec(b.max_seq_length, b.max_predictions_per_seq, token_boundary=b.token_boundary)
    shards = [{"file": s["file"], "count": s["count"], "bytes": s["bytes"]}
              for s in sorted(r["shards"], key=lambda s: s["file"])]
    stats = r.get("stats", {})
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
        "sentence_chars_histogram": stats.get("sentence_chars", {}),
        "word_fallbacks": {k: v for k, v in r["counters"].items()
                           if k.startswith(("mask:fallback", "segment:fallback"))},
    }


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    try:
        run(argv if argv is not None else sys.argv[1:])
    except BuildError as e:
        print(f"corpusflow: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
