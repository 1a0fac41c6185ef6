"""``python -m pipelines.build``: raw dumps -> cleaned docs -> deduped docs -> TFRecords.

The stages, in order, are the registry ``pipelines.stages.REGISTRY``:
clean, dedup, segment, instances, tfrecords (see ``docs/DESIGN.md``). This
driver parses the options, plans which stages run (``pipelines.plan``: config
hashes and ``--resume``), runs each stage's Beam graph, writes each stage's
manifest as it finishes and the build's ``manifest.json`` / ``stats.json`` at
the end (``pipelines.manifest``). ``run(argv)`` is the one entry point for the
CLI and tests; ``main`` maps errors to exit codes.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Optional

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from corpusflow import __version__
from pipelines import beam_util, cli, manifest as mf, outdir, plan
from pipelines.errors import (FAULT_ERRNOS, BuildError, EmptyRunError, EnvironmentFault,
                              UsageError, fault_message, os_error_in, remove_temps)
from pipelines.inputs import expand_inputs
from pipelines.options import BuildOptions, option_classes
from pipelines.rss import PeakRss
from pipelines.runners import make_runner
from pipelines.stages import NAMES, REGISTRY, Stage
from pipelines.stages.base import Ctx, clear_prefix, say
from pipelines.stages.instances import has_vocab

__all__ = ["run", "main", "BuildError", "UsageError", "EnvironmentFault", "EmptyRunError"]

# Modules the local runner's worker zygote imports once, before it forks the
# SDK workers, so each stage's workers start with them loaded (the stage modules
# import the rest lazily, in DoFn.setup).
PRELOAD = ("pipelines.stages", "corpusflow.clean.sentences", "opencc",
           "corpusflow.pretrain.example", "corpusflow.segment.jieba_backend",
           "corpusflow.tokenize.wordpiece", "corpusflow.io.readers", "corpusflow.io.tfrecord")


def _parse(argv: Optional[list[str]]) -> tuple[PipelineOptions, BuildOptions]:
    """Strict parsing (nothing discarded), every range checked, absolute paths."""
    argv = cli.parse(argv)
    options = PipelineOptions(argv)
    options.view_as(SetupOptions).save_main_session = False
    b = options.view_as(BuildOptions)
    cli.validate(b)
    cli.absolutize(b)
    if b.stop_after in ("instances", "tfrecords") and not has_vocab(b):
        raise UsageError(f"--stop_after {b.stop_after} needs a --vocab_file (not 'none')")
    return options, b


def stages_to_run(b: BuildOptions) -> tuple[Stage, ...]:
    """Up to ``--stop_after``; by default tfrecords, or dedup with ``--vocab_file none``."""
    last = b.stop_after or ("tfrecords" if has_vocab(b) else "dedup")
    return REGISTRY[: NAMES.index(last) + 1]


def run(argv: Optional[list[str]] = None) -> dict:
    """Run the build; returns the manifest (also written to ``OUTPUT/manifest.json``).

    Raises ``BuildError`` (bad options or inputs, before any work),
    ``EnvironmentFault`` (disk full, unwritable output ...) and ``EmptyRunError``
    (nothing kept, without ``--allow_empty``; the manifest is written first).
    """
    options, b = _parse(argv)
    out = b.output.rstrip("/")
    outdir.check_not_input(out, b.input + list(b.decontaminate or []))
    ctx = Ctx(options, b, out, runner=None, files=expand_inputs(b.input))
    todo = stages_to_run(b)
    for stage in todo:  # facts each hash needs (a bad vocab or model fails here, before work)
        ctx.facts[stage.name] = stage.identity(ctx) if stage.identity else None
    hashes = plan.stage_hashes(ctx, todo)
    ctx.runner = make_runner(options, preload=PRELOAD)
    if ctx.dry_run:
        return _run_stages(ctx, todo, hashes, {})
    lock = outdir.BuildLock(out)
    try:
        replaced = lock.acquire()
    except OSError as e:
        raise EnvironmentFault(fault_message(e, out)) from e
    try:
        if replaced:
            say(b.progress, f"took over a stale lock of pid {replaced.get('pid')} "
                            f"(started {replaced.get('started', '?')}; that process is gone)")
        outdir.claim(out, hashes, b.resume, b.overwrite)
        reuse: dict[str, dict] = {}
        if b.resume:
            plan.clear_later_stages(out, todo)
            reuse = plan.resume_plan(ctx, todo, hashes, say=lambda m: say(b.progress, m))
        return _run_stages(ctx, todo, hashes, reuse)
    except OSError as e:
        raise EnvironmentFault(fault_message(e, out)) from e
    finally:
        lock.release()


def _run_stage(ctx: Ctx, stage: Stage) -> dict:
    """One stage's graph; a disk or permission fault inside the runner becomes one line."""
    try:
        return stage.run(ctx)
    except Exception as e:  # noqa: BLE001 - runners wrap worker errors; find the OS one
        fault = os_error_in(e)
        if fault is None:
            raise
        remove_temps(ctx.out)
        raise EnvironmentFault(fault_message(fault, ctx.out)) from e


def _run_stages(ctx: Ctx, todo: tuple[Stage, ...], hashes: dict, reuse: dict) -> dict:
    b, out = ctx.b, ctx.out
    for stage in todo:
        if stage.name in reuse:
            say(b.progress, f"stage {stage.name}: up to date, skipped (--resume)")
            ctx.results[stage.name] = reuse[stage.name]
            continue
        if not ctx.dry_run:
            for pattern in stage.outputs:
                clear_prefix(f"{out}/{pattern}")
        started, cpu0 = time.time(), time.process_time()
        say(b.progress, f"stage {stage.name}: running on {stage.describe(ctx)}")
        with PeakRss() as rss:
            r = _run_stage(ctx, stage)
        if ctx.dry_run:
            say(b.progress, f"stage {stage.name}: job graph built (--dry_run), not run")
            ctx.results[stage.name] = {}
            continue
        r["config_hash"] = hashes[stage.name]
        r["wall_seconds"] = round(time.time() - started, 3)
        r["driver_cpu_seconds"] = round(time.process_time() - cpu0, 3)
        r["peak_rss_mb"] = rss.peak_mb
        if stage.record:
            stage.record(ctx, r)
        beam_util.write_json_file(plan.manifest_path(out, stage.name), r)
        ctx.results[stage.name] = r
        if stage.on_done:
            stage.on_done(ctx, r)
        say(b.progress, f"stage {stage.name}: done in {r['wall_seconds']:.1f}s; "
            + ", ".join(f"{k}={v}" for k, v in sorted(r["counters"].items())
                        if k.count(":") == 1 or k.startswith(("read:rejected", "clean:filtered"))))
    if ctx.dry_run:
        return {"dry_run": True, "stages": ctx.dry_run_report,
                "config_hash": hashes[todo[-1].name]}
    manifest = _manifest(ctx, todo, hashes)
    beam_util.write_json_file(f"{out}/manifest.json", manifest)
    beam_util.write_json_file(f"{out}/stats.json", mf.build_stats(manifest, ctx.results))
    c = manifest["counts"]
    say(b.progress, f"done: read={c['read']} kept={c['kept']} filtered={c['filtered']} "
        f"duplicates={c['duplicates']} rejected={c['rejected']} -> {out}/manifest.json")
    empty = mf.empty_reason(manifest)
    if empty and not b.allow_empty:
        raise EmptyRunError(f"{empty}; see {out}/rejects/ (pass --allow_empty if this is wanted)")
    return manifest


def _manifest(ctx: Ctx, todo: tuple[Stage, ...], hashes: dict) -> dict[str, Any]:
    """``manifest.json``: options, hashes, versions, inputs, counts, docs, each stage's section."""
    counters: dict[str, int] = {}
    for stage in todo:
        for k, v in ctx.results[stage.name]["counters"].items():
            counters[k] = counters.get(k, 0) + v
    doc_stage = "dedup" if "dedup" in hashes else "clean"
    config: dict[str, Any] = {}
    for cls in option_classes():
        config.update(cls.from_options(ctx.b).manifest_json())
    manifest: dict[str, Any] = {
        "corpusflow_version": __version__,
        "created_unix": int(time.time()),
        "config": dict(sorted(config.items())),
        "config_hash": hashes[todo[-1].name],
        "stage_hashes": dict(hashes),
        "versions": mf.versions(),
        "inputs": ctx.files,
        "counts": mf.summarize_counts(counters, doc_stage),
        "counters": dict(sorted(counters.items())),
        "docs": {"format": ctx.b.docs_format,
                 "shards": sorted(ctx.results[doc_stage]["shards"], key=lambda s: s["file"])},
    }
    for stage in todo:
        if stage.manifest:
            manifest.update(stage.manifest(ctx, counters))
    return manifest


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
        if e.errno not in FAULT_ERRNOS:
            raise
        print(f"corpusflow: error: {fault_message(e, '')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
