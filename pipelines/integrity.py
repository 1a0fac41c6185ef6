"""Checksums of output files (computed while writing) and fingerprints of inputs.

``--resume`` used to trust any file of its recorded size: an input edited in
place, or a shard corrupted on disk, was skipped as "done". Every finished
output file now records its CRC32C (the writers compute it as the bytes go out,
``Crc32cWriter``), every stage manifest the fingerprint of each input, and
``--resume`` checks both before it reuses a stage.
"""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO, Optional

import google_crc32c
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_CHUNK = 1 << 20
# Bytes hashed at each end of an input file for its fingerprint.
EDGE_BYTES = 1 << 20


class Crc32cWriter:
    """A write-only file wrapper that keeps the CRC32C of everything written through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.crc = 0
        self.size = 0

    def write(self, data) -> int:
        data = bytes(data) if not isinstance(data, bytes) else data
        self.crc = google_crc32c.extend(self.crc, data)
        self.size += len(data)
        self._raw.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    @property
    def hexdigest(self) -> str:
        return f"{self.crc:08x}"

    def __enter__(self) -> "Crc32cWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def crc32c_of_bytes(data: bytes) -> str:
    return f"{google_crc32c.value(data):08x}"


def file_crc32c(path: str) -> str:
    """CRC32C of a file's stored bytes (as written, compressed or not)."""
    crc = 0
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            crc = google_crc32c.extend(crc, chunk)
    return f"{crc:08x}"


def fingerprint(path: str, size: int, mtime: Optional[float]) -> dict[str, Any]:
    """Size, mtime and a sha256 of the first and last MiB: what tells an edited input.

    Reading both ends catches appends, truncations and in-place edits near either
    end at a fixed cost per file; mtime catches edits in the middle by any
    ordinary writer.
    """
    h = hashlib.sha256()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        h.update(f.read(EDGE_BYTES))
        if size > 2 * EDGE_BYTES:
            f.seek(size - EDGE_BYTES)
            h.update(f.read(EDGE_BYTES))
        elif size > EDGE_BYTES:
            h.update(f.read())
    return {"size": size, "mtime": mtime, "edges_sha256": h.hexdigest()}


def fingerprint_changes(old: dict, new: dict) -> list[str]:
    """What differs between two fingerprints, in words (empty: unchanged)."""
    out = []
    if old.get("size") != new.get("size"):
        out.append(f"size {old.get('size')} -> {new.get('size')}")
    if old.get("edges_sha256") != new.get("edges_sha256"):
        out.append("content of its first/last MiB")
    if old.get("mtime") != new.get("mtime"):
        out.append("modification time")
    return out


def file_sha256(path: str) -> str:
    """SHA-256 of a whole file (local or any Beam filesystem)."""
    import hashlib
    from apache_beam.io.filesystems import FileSystems
    h = hashlib.sha256()
    with FileSystems.open(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
