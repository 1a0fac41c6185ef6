"""Which stages run: config hashes, ``--resume``'s reuse decisions, stale files removed.

Each stage's hash covers the hashed fields of its option classes, the facts its
``identity`` adds (inputs, segmenter, vocab) and the previous stage's hash, so a
changed option reruns exactly the stages downstream of it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any, Callable, Optional, Sequence

from apache_beam.io.filesystems import FileSystems

from pipelines import beam_util, integrity
from pipelines.stages import REGISTRY
from pipelines.stages.base import Ctx, Stage, clear_prefix, match


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def stage_hashes(ctx: Ctx, todo: Sequence[Stage]) -> dict[str, str]:
    """``{stage: config hash}``, each chained with the one before it."""
    hashes: dict[str, str] = {}
    prev: Optional[str] = None
    for stage in todo:
        hashes[stage.name] = _hash([prev, stage.config_json(ctx), ctx.facts.get(stage.name)])
        prev = hashes[stage.name]
    return hashes


def manifest_path(out: str, stage: str) -> str:
    return f"{out}/stages/{stage}.json"


def load_stage(out: str, stage: str, config_hash: str) -> tuple[Optional[dict], str]:
    """A finished stage's manifest if it matches ``config_hash``; else None and why not.

    An unreadable manifest (a run killed while writing one, before writes became
    atomic, or a damaged disk) is named and treated as "not finished".
    """
    path = manifest_path(out, stage)
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


def outputs_check(out: str, stage: Stage, m: dict) -> str:
    """Why the stage's recorded output files cannot be reused ("" when they can).

    Every file of the shard list must be there with its recorded size and CRC32C
    (computed when it was written); a file recorded without a checksum (written
    by an older version) is checked by size only.
    """
    where = stage.output_dir
    found = {posixpath.basename(x.path): x.size_in_bytes for x in match(f"{out}/{where}/*")}
    for s in m.get("shards", []):
        name = s["file"]
        if name not in found:
            return f"{where}/{name} is missing"
        if "bytes" in s and found[name] != s["bytes"]:
            return f"{where}/{name} has {found[name]} bytes, {s['bytes']} recorded"
        if s.get("crc32c"):
            crc = integrity.file_crc32c(f"{out}/{where}/{name}")
            if crc != s["crc32c"]:
                return f"{where}/{name} is damaged (crc32c {crc}, {s['crc32c']} recorded)"
    return ""


def resume_plan(ctx: Ctx, todo: Sequence[Stage], hashes: dict,
                say: Optional[Callable[[str], None]] = None) -> dict[str, dict]:
    """The finished stages ``--resume`` reuses: ``{stage: its manifest}``.

    A stage is reused when its manifest matches its config hash and so do all
    upstream ones, its own ``check_reuse`` finds nothing stale (clean: the raw
    files' fingerprints), and either its output files are all there with their
    checksums or a later reused stage already consumed them (the instances runs
    are removed after the write). Everything after the last reusable stage
    reruns; ``say`` is told why.
    """
    manifests: dict[str, dict] = {}
    why: dict[str, str] = {}
    last = -1
    for i, stage in enumerate(todo):
        m, reason = load_stage(ctx.out, stage.name, hashes[stage.name])
        if m is None:
            why[stage.name] = reason
            break
        reason = stage.check_reuse(ctx, m) if stage.check_reuse else ""
        if reason:
            why[stage.name] = reason
            break
        manifests[stage.name] = m
        reason = outputs_check(ctx.out, stage, m)
        if reason:
            why[stage.name] = reason
        else:
            last = i
    reuse = {s.name: manifests[s.name] for s in todo[: last + 1]}
    if say is not None:
        rerun = [s.name for s in todo if s.name not in reuse]
        if rerun:
            reasons = [f"{s}: {why[s]}" for s in rerun if s in why]
            say(f"stage {rerun[0]}: rerun ({'; '.join(reasons) or 'an upstream stage reruns'})")
    return reuse


def clear_later_stages(out: str, todo: Sequence[Stage]) -> None:
    """A resumed run that stops earlier than the last one leaves none of its later files."""
    for stage in REGISTRY[len(todo):]:
        for pattern in stage.outputs:
            clear_prefix(f"{out}/{pattern}")
        for path in (manifest_path(out, stage.name), f"{out}/stages/{stage.name}_shards.json",
                     f"{out}/stages/{stage.name}_stats.json", f"{out}/{stage.output_dir}",
                     *(f"{out}/{d}" for d in stage.extra_dirs)):
            if FileSystems.exists(path):
                FileSystems.delete([path])
    for name in ("manifest.json", "stats.json", "report.html"):
        if FileSystems.exists(f"{out}/{name}"):
            FileSystems.delete([f"{out}/{name}"])
