"""The input files of a build: globs expanded, each fingerprinted (or its kind named)."""

from __future__ import annotations

import os
import stat
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from pipelines import integrity
from pipelines.errors import BuildError


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
