"""The core's file opener backed by Beam's FileSystems: what the pipelines pass in.

``corpusflow`` never imports Beam; its file-reading code takes an ``Opener``
(``corpusflow.io.opener``). ``BEAM`` reaches URLs (``gs://``, ``s3://``, ...)
through Beam's FileSystems and local paths exactly as ``LOCAL`` does, so a
local build reads the same bytes through either.
"""

from __future__ import annotations

from typing import BinaryIO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from corpusflow.io.opener import LOCAL, is_url


class BeamOpener:
    """``corpusflow.io.opener.Opener`` for URLs through Beam's FileSystems; local paths as ``LOCAL``.

    Picklable (no state): the objects that carry it (a ``Cleaner``, an LTP
    segmenter) travel to workers.
    """

    def open(self, path: str, mode: str = "rb") -> BinaryIO:
        if not is_url(path):
            return LOCAL.open(path, mode)
        # UNCOMPRESSED: the default (AUTO) would silently gunzip a *.gz file; the
        # core decompresses inputs itself and model files are read as stored.
        if mode == "rb":
            return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        if mode == "wb":
            return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
        raise ValueError(f"opener mode must be 'rb' or 'wb', got {mode!r}")

    def exists(self, path: str) -> bool:
        return FileSystems.exists(path) if is_url(path) else LOCAL.exists(path)

    def list_files(self, directory: str) -> list[str]:
        if not is_url(directory):
            return LOCAL.list_files(directory)
        prefix = directory.rstrip("/") + "/"
        found = FileSystems.match([prefix + "**"])[0].metadata_list
        return sorted(m.path[len(prefix):] for m in found if m.path.startswith(prefix))

    def __repr__(self) -> str:
        return "BEAM"


#: The opener every pipeline stage passes to the core.
BEAM = BeamOpener()
