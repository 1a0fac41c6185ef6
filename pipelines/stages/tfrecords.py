"""Stage ``tfrecords``: the instances stage's sorted runs merged into ``tfrecords/part-*``."""

from __future__ import annotations

import dataclasses
import posixpath

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from corpusflow.config import Config, option
from corpusflow.pretrain.instances import InstanceConfig
from pipelines.sharded_write import MergeRuns
from pipelines.stages.base import Ctx, Stage, collect, pipeline, side_outputs
from pipelines.stages.instances import runs_dir

MAX_SHARDS = 100_000


@dataclasses.dataclass(frozen=True)
class WriteConfig(Config):
    """The TFRecord shards (hashed by the tfrecords stage)."""

    GROUP = "corpusflow: pretraining instances (stages instances, tfrecords)"

    num_shards: int = option(8, f"TFRecord shards written (1..{MAX_SHARDS}).", lo=1, hi=MAX_SHARDS)
    tfrecord_gzip: bool = option(False, "GZIP-compress the TFRecord shards.", kind="flag")
    keep_instance_runs: bool = option(
        False, "Keep the instances stage's sorted runs (about the size of the TFRecords) so a "
               "changed --num_shards or --tfrecord_gzip with --resume only rewrites the shards.",
        kind="flag", hashed=False)


def run(ctx: Ctx) -> dict:
    """Merge only: the runs were sorted and spilled by the instances stage."""
    cfg = ctx.config(WriteConfig)
    runs = sorted((x["bucket"], (f"{runs_dir(ctx.out)}/{x['file']}", x["count"]))
                  for x in (ctx.results.get("instances") or {}).get("shards", []))
    suffix = ".tfrecord" + (".gz" if cfg.tfrecord_gzip else "")
    tmp = f"{ctx.out}/tfrecords/_tmp-part"
    p = pipeline(ctx)
    infos = (p | "Runs" >> beam.Create(runs)
             | "WriteShards" >> MergeRuns(f"{ctx.out}/tfrecords/part", cfg.num_shards, "tfrecord",
                                          cfg.tfrecord_gzip, suffix, tmp))
    side_outputs(ctx, STAGE, infos)
    return collect(ctx, p, STAGE, [tmp])


def on_done(ctx: Ctx, r: dict) -> None:
    """The runs are as large as the TFRecords; only a later change of
    --num_shards/--tfrecord_gzip would read them again (that rebuilds them).
    Removed only now that this stage's manifest is on disk."""
    if ctx.config(WriteConfig).keep_instance_runs:
        return
    runs = posixpath.dirname(runs_dir(ctx.out))
    if FileSystems.exists(runs):
        FileSystems.delete([runs])


def manifest_section(ctx: Ctx, counters: dict[str, int]) -> dict:
    """The manifest's ``tfrecords`` section: schema, shards and instance statistics.

    Its keys are what trainers read (``trainer_hooks.data``): they keep their
    names (``masking.strategy``, ``seed``) whatever the options are called.
    """
    from corpusflow.pretrain.example import feature_spec
    b = ctx.config(InstanceConfig)
    vocab, results = ctx.facts["instances"], ctx.results
    spec = feature_spec(b.max_seq_length, b.max_predictions_per_seq, token_boundary=b.token_boundary)
    shards = [{"file": s["file"], "count": s["count"], "bytes": s["bytes"]}
              for s in sorted(results["tfrecords"]["shards"], key=lambda s: s["file"])]
    stats = results["instances"].get("stats") or {}
    seg_stats = results["segment"].get("stats") or {}
    return {"tfrecords": {
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
        "compression": "GZIP" if ctx.b.tfrecord_gzip else "",
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
    }}


STAGE = Stage(
    name="tfrecords", configs=(WriteConfig,), output_dir="tfrecords", outputs=("tfrecords/part-*",),
    run=run, on_done=on_done, manifest=manifest_section,
    describe=lambda ctx: f"{ctx.b.num_doc_shards} docs shard(s)")
