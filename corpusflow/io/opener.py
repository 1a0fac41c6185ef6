"""How the core reaches files: an ``Opener`` passed in, local files by default.

The core never imports a runner's filesystem layer. Code that reads model
directories, dictionaries or inputs takes an ``opener`` argument (default
``LOCAL``); the pipelines pass one that also reaches ``gs://`` and other URLs
through Beam's FileSystems (``pipelines.beam_io.BEAM``).

Bytes are always the stored bytes: an opener never decompresses (``.gz``
inputs are decompressed by ``corpusflow.io.compression``, which detects
truncation the same way for every codec).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO, Optional, Protocol


class Opener(Protocol):
    """Binary access to files by path (local paths, or URLs where the opener supports them)."""

    def open(self, path: str, mode: str = "rb") -> BinaryIO:
        """``mode`` ``"rb"`` (read) or ``"wb"`` (create or replace); the stored bytes, never decompressed."""

    def exists(self, path: str) -> bool:
        """Whether a file is at ``path``."""

    def list_files(self, directory: str) -> list[str]:
        """Every file under ``directory`` (recursively): sorted paths relative to it, ``/``-separated."""


class NotRegularFile(OSError):
    """A local path that is a directory, FIFO, socket or device, not a file (``kind`` says which)."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(f"{path}: {kind}, not a regular file")
        self.kind = kind


def is_url(path: str) -> bool:
    """True for ``scheme://`` paths (``gs://``, ``s3://``, ...), which a local opener cannot reach."""
    return "://" in path


def join(directory: str, rel: str) -> str:
    """``directory`` / ``rel`` (``rel`` ``/``-separated, as ``list_files`` returns it)."""
    if is_url(directory):
        return f"{directory.rstrip('/')}/{rel}"
    return os.path.join(directory, *rel.split("/"))


def not_regular(path: str) -> Optional[str]:
    """What a local path is when it is not a regular file (None for a file, a missing path or a URL).

    Checked with ``stat`` before opening: opening a FIFO blocks until a writer
    comes, which hung whole builds.
    """
    if is_url(path):
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing or unreadable: opening reports it
    if stat.S_ISREG(mode):
        return None
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


class LocalOpener:
    """Local files through ``open`` and ``os``; a URL is not found (FileNotFoundError)."""

    def open(self, path: str, mode: str = "rb") -> BinaryIO:
        if mode not in ("rb", "wb"):
            raise ValueError(f"opener mode must be 'rb' or 'wb', got {mode!r}")
        if is_url(path):
            raise FileNotFoundError(f"{path}: a URL; this opener reads local files only")
        if mode == "rb":
            kind = not_regular(path)
            if kind is not None:
                raise NotRegularFile(path, kind)
        return open(path, mode)

    def exists(self, path: str) -> bool:
        return os.path.isfile(path)

    def list_files(self, directory: str) -> list[str]:
        files = []
        for root, dirs, names in os.walk(directory, followlinks=True):
            dirs.sort()
            for n in names:
                files.append(os.path.relpath(os.path.join(root, n), directory).replace(os.sep, "/"))
        return sorted(files)

    def __repr__(self) -> str:
        return "LOCAL"


#: The default opener of every core function that reads files.
LOCAL = LocalOpener()

