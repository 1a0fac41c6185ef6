"""What a stage is (``Stage``), what it is given (``Ctx``) and how it runs its Beam graph.

A stage module (``clean``, ``dedup``, ``segment``, ``instances``, ``tfrecords``)
defines one ``STAGE = Stage(...)``; the registry (``pipelines.stages``) lists them
in order, and the driver (``pipelines.build``), ``--stop_after``, ``--resume``
and the manifest read only that list.
"""

from __future__ import annotations

import dataclasses
import posixpath
import sys
import time
from typing import Any, Callable, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines import beam_util
from pipelines.sharded_write import ShardedWrite, cleanup, shard_name
from pipelines.stages.common import keyed_reject


@dataclasses.dataclass
class Ctx:
    """Everything a stage's ``run`` may read: options, output dir, runner, earlier results."""

    options: Any                     # Beam PipelineOptions
    b: Any                           # pipelines.options.BuildOptions (every flag, by name)
    out: str
    runner: Any
    files: list = dataclasses.field(default_factory=list)      # expanded inputs
    facts: dict = dataclasses.field(default_factory=dict)      # stage name -> its identity()
    results: dict = dataclasses.field(default_factory=dict)    # stage name -> its result
    dry_run_report: dict = dataclasses.field(default_factory=dict)
    _configs: dict = dataclasses.field(default_factory=dict)

    def config(self, cls: type) -> Any:
        """The options of one config class (``cls.from_options``), built once."""
        if cls not in self._configs:
            self._configs[cls] = cls.from_options(self.b)
        return self._configs[cls]

    @property
    def dry_run(self) -> bool:
        return bool(self.options.get_all_options().get("dry_run"))


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: what shapes it, what it writes, how it runs.

    ``configs``: option classes whose hashed fields (``to_json``) go into the
    stage's config hash, chained with the previous stage's hash and
    ``identity(ctx)`` (facts the options do not show: input fingerprints, the
    segmenter's model hash, the vocab's hash).
    ``output_dir``: where the files of its shard list live (checked by --resume).
    ``outputs``: globs of every file it owns, cleared before it runs.
    """

    name: str
    configs: tuple
    output_dir: str
    outputs: tuple
    run: Callable[[Ctx], dict]
    describe: Callable[[Ctx], str]
    rejects: Optional[str] = None
    identity: Optional[Callable[[Ctx], Any]] = None
    check_reuse: Optional[Callable[[Ctx, dict], str]] = None   # why a finished run is stale
    record: Optional[Callable[[Ctx, dict], None]] = None       # adds to its manifest before it is written
    on_done: Optional[Callable[[Ctx, dict], None]] = None      # after its manifest is written
    manifest: Optional[Callable[[Ctx, dict], dict]] = None     # its section of manifest.json
    summary: Optional[Callable[[list], dict]] = None           # its shards in stats.json
    extra_dirs: tuple = ()                                     # removed with its outputs

    def config_json(self, ctx: Ctx) -> dict:
        out: dict = {}
        for cls in self.configs:
            out.update(ctx.config(cls).to_json())
        return out


def say(enabled: bool, msg: str) -> None:
    """A progress line on stderr."""
    if enabled:
        print(f"[corpusflow {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def match(pattern: str) -> list:
    try:
        return FileSystems.match([pattern])[0].metadata_list
    except Exception:  # noqa: BLE001 - nothing there
        return []


def clear_prefix(pattern: str) -> None:
    """Remove leftovers of an earlier run so no stale shard survives."""
    old = [m.path for m in match(pattern)]
    if old:
        FileSystems.delete(old)


def stage_files(prefix: str, num_shards: int, suffix: str) -> list[str]:
    """A stage's output files: their names depend only on the shard count."""
    return [shard_name(prefix, i, num_shards, suffix) for i in range(num_shards)]


def docs_paths(ctx: Ctx) -> list[str]:
    """The deduplicated documents (the dedup stage's output), shard by shard."""
    b = ctx.b
    return stage_files(f"{ctx.out}/docs/docs", b.num_doc_shards,
                       ".parquet" if b.docs_format == "parquet" else ".jsonl.gz")


def progress_opts(ctx: Ctx) -> dict:
    """What a DoFn's progress meter needs: documents expected, workers."""
    from apache_beam.options.pipeline_options import DirectOptions
    docs_in = (ctx.results.get("dedup") or {}).get("counters", {}).get("dedup:kept", 0)
    workers = max(1, ctx.options.view_as(DirectOptions).direct_num_workers or 1)
    return {"total": docs_in, "enabled": ctx.b.progress, "workers": workers}


def pipeline(ctx: Ctx) -> beam.Pipeline:
    return beam.Pipeline(runner=ctx.runner, options=ctx.options)


def side_outputs(ctx: Ctx, stage: Stage, infos, stats=None, rejects=None) -> None:
    """A stage's shard list, merged stats and rejects (names shared by every stage)."""
    infos | "ShardList" >> beam_util.WriteJson(f"{ctx.out}/stages/{stage.name}_shards.json")
    if stats is not None:
        stats | "Stats" >> beam_util.WriteJson(f"{ctx.out}/stages/{stage.name}_stats.json",
                                               merge=True)
    if rejects is not None:
        (rejects | f"KeyRejects{stage.rejects}" >> beam.Map(keyed_reject)
         | f"WriteRejects{stage.rejects}" >> ShardedWrite(f"{ctx.out}/rejects/{stage.rejects}", 1,
                                                          fmt="jsonl", gzip_output=True))


def collect(ctx: Ctx, p: beam.Pipeline, stage: Stage, tmp_dirs: list[str]) -> dict:
    """Run the stage's pipeline and gather what the driver needs ({} for a --dry_run)."""
    result = p.run()
    if ctx.dry_run:
        proto = getattr(ctx.runner, "proto_pipeline", None)
        ctx.dry_run_report[stage.name] = {
            "pipeline_proto_bytes": proto.ByteSize() if proto else None,
            "job_json_bytes": len(str(getattr(ctx.runner, "job", "")))}
        return {}
    result.wait_until_finish()
    if stage.rejects:
        tmp_dirs = tmp_dirs + [f"{ctx.out}/rejects/_tmp-{stage.rejects}"]
    for t in tmp_dirs:
        cleanup(t)
    stats_path = f"{ctx.out}/stages/{stage.name}_stats.json"
    return {"counters": beam_util.query_counters(result),
            "shards": beam_util.read_json_file(f"{ctx.out}/stages/{stage.name}_shards.json"),
            "stats": beam_util.read_json_file(stats_path) if FileSystems.exists(stats_path) else {}}


def basename(path: str) -> str:
    return posixpath.basename(path)
