"""An output directory is owned by one run: ownership checks and the build lock.

- A run never reads its own outputs: an output directory that equals an input
  path, or could hold files an input glob matches, is refused.
- A directory holding files corpusflow did not write is refused; one holding a
  different run's outputs is refused unless ``--resume`` (continue it) or
  ``--overwrite`` (clear it). A new run never leaves an earlier run's files
  beside its manifest.
- ``DIR/.corpusflow.lock`` (pid, host, process start time, start time) stops a
  second concurrent build; a lock whose process is gone is taken over.

Local directories only: on ``gs://`` there is no atomic create to lock with, so
only the ownership checks run there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from typing import Iterable, Optional

from pipelines.errors import BuildError
from pipelines.stages import NAMES as STAGE_NAMES

LOCK = ".corpusflow.lock"
# Every name corpusflow writes at the top of an output directory.
OWN_NAMES = frozenset({"manifest.json", "stats.json", "report.html", "stages", "docs", "rejects",
                       "tfrecords", "dedup", LOCK})
# Paths (relative to the output) of the kinds of files a build writes: an input
# glob that matches one of them would read the build's own output next time.
_SAMPLE_OUTPUTS = (
    "manifest.json", "stats.json", "report.html", LOCK, "stages/clean.json",
    "stages/clean/docs-00000-of-00016.jsonl.gz", "docs/docs-00000-of-00016.jsonl.gz",
    "docs/docs-00000-of-00016.parquet", "rejects/clean-00000-of-00001.jsonl.gz",
    "dedup/clusters-00000-of-00001.jsonl.gz", "stages/segment/words-00000-of-00016.words",
    "stages/instances/runs/b00000-0.run", "tfrecords/part-00000-of-00008.tfrecord",
    "tfrecords/part-00000-of-00008.tfrecord.gz",
)


def _glob_regex(pattern: str) -> re.Pattern:
    """Beam's local glob semantics: ``*``/``?`` stay within a folder, ``**`` crosses folders."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def check_not_input(out: str, globs: Iterable[str]) -> None:
    """Refuse an output directory that equals an input or holds files an input glob matches."""
    out = out.rstrip("/")
    for g in globs:
        g_norm = g.rstrip("/")
        if g_norm == out:
            raise BuildError(f"--output {out} is also an --input: choose another output directory")
        rx = _glob_regex(g_norm)
        hit = next((p for p in _SAMPLE_OUTPUTS if rx.match(f"{out}/{p}")), None)
        if hit is not None:
            raise BuildError(f"--output {out} lies inside --input {g!r} (it would match "
                             f"{out}/{hit} and read this build's own output next time): choose an "
                             f"output directory outside the input globs")


def _is_ours(path: str) -> bool:
    return os.path.basename(path) in OWN_NAMES


def _recorded_hashes(out: str) -> Optional[dict[str, str]]:
    """Stage hashes recorded by the run whose outputs are in ``out`` (None: no run there).

    Unreadable manifests are skipped (they count as unfinished stages).
    """
    found: dict[str, str] = {}
    any_output = False
    man = os.path.join(out, "manifest.json")
    if os.path.exists(man):
        any_output = True
        try:
            with open(man, encoding="utf-8") as f:
                found.update(json.load(f).get("stage_hashes") or {})
        except (OSError, ValueError, AttributeError):
            pass
    stages = os.path.join(out, "stages")
    if os.path.isdir(stages):
        for name in os.listdir(stages):
            any_output = True
            if name.endswith(".json") and name[:-5] in STAGE_NAMES:
                try:
                    with open(os.path.join(stages, name), encoding="utf-8") as f:
                        h = json.load(f).get("config_hash")
                except (OSError, ValueError, AttributeError):
                    continue
                if h:
                    found.setdefault(name[:-5], h)
    for name in ("docs", "tfrecords", "rejects", "dedup"):
        d = os.path.join(out, name)
        if os.path.isdir(d) and os.listdir(d):
            any_output = True
    return found if any_output else None


def clear_outputs(out: str) -> list[str]:
    """Remove everything corpusflow writes in ``out`` (never other files); what was removed."""
    removed = []
    for name in sorted(OWN_NAMES - {LOCK}):
        p = os.path.join(out, name)
        if os.path.isdir(p):
            shutil.rmtree(p)
            removed.append(name)
        elif os.path.lexists(p):
            os.remove(p)
            removed.append(name)
    return removed


def claim(out: str, hashes: dict[str, str], resume: bool, overwrite: bool) -> None:
    """Check that ``out`` may be used by this run and clear what must not survive it.

    ``hashes`` are this run's stage config hashes: a directory whose recorded
    stage hashes all agree with them holds this same run (rebuilt in place);
    a different run's outputs need ``--resume`` or ``--overwrite``.
    """
    if "://" in out:
        return
    if os.path.exists(out) and not os.path.isdir(out):
        raise BuildError(f"--output {out} exists and is not a directory")
    if not os.path.isdir(out):
        return
    foreign = sorted(e for e in os.listdir(out) if not _is_ours(e))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise BuildError(f"--output {out} holds files corpusflow did not write ({shown}): "
                         f"choose an empty or new directory")
    prev = _recorded_hashes(out)
    if prev is None or resume:
        return
    if overwrite:
        clear_outputs(out)
        return
    if not prev or any(hashes.get(s) != h for s, h in prev.items()):
        raise BuildError(f"--output {out} holds the output of a different run: pass --resume to "
                         f"continue it, --overwrite to replace it, or choose another directory")
    # The same run again: rebuilt from scratch, nothing of the old one survives.
    clear_outputs(out)


# ------------------------------------------------------------------ lock
def _proc_start(pid: int) -> Optional[str]:
    """The kernel's start time of ``pid`` (tells a reused pid from the lock's owner)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BuildLock:
    """``DIR/.corpusflow.lock``, created atomically; removed when the build ends."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.path = os.path.join(out, LOCK)
        self.held = False

    def _info(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _proc_start(os.getpid()),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "argv": sys.argv[1:]}

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") != socket.gethostname():
            return False  # cannot see another host's processes
        pid = int(holder.get("pid", -1))
        if pid <= 0 or not _alive(pid):
            return True
        start = holder.get("proc_start")
        return start is not None and _proc_start(pid) not in (None, start)

    def acquire(self) -> Optional[dict]:
        """Take the lock; returns the stale holder it replaced (None if there was none)."""
        if "://" in self.out:
            return None
        os.makedirs(self.out, exist_ok=True)
        replaced = None
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read_holder()
                if holder is None or not self._stale(holder):
                    h = holder or {}
                    raise BuildError(
                        f"--output {self.out} is in use by another build (pid {h.get('pid', '?')} "
                        f"on {h.get('host', '?')}, started {h.get('started', '?')}); wait for it, "
                        f"or remove {self.path} if that build is gone")
                replaced = holder
                os.remove(self.path)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._info(), f)
            self.held = True
            return replaced
        raise BuildError(f"could not take the lock {self.path}")

    def _read_holder(self) -> Optional[dict]:
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return {"pid": -1, "host": socket.gethostname()}  # gone meanwhile: stale
        except (OSError, ValueError):
            # Half-written by a build killed while creating it: stale once it is old.
            try:
                age = time.time() - os.path.getmtime(self.path)
            except OSError:
                age = 1e9
            return {"pid": -1, "host": socket.gethostname()} if age > 60 else None

    def release(self) -> None:
        if self.held:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self) -> "BuildLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
