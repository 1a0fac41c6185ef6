"""Word starts of segmented documents, kept beside the docs shards.

The segment stage writes one word-starts file per docs shard; record i belongs
to document i of that shard. A record is a header (the document's stable id
hash and a bit count) and a bitmap with one bit per offset of
``"\\n".join(sentences)``, end offset included, set where a word starts (the
offsets ``InstanceBuilder.prepare`` takes as ``word_starts``). One bit per
character is ~4% of the UTF-8 text, so a changed masking or sequence option
re-reads this instead of running the segmenter again.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Iterator

import numpy as np

MAGIC = b"CFWORDS1"
_HDR = struct.Struct("<QI")


class StartsFileError(ValueError):
    """A word-starts file that is not one, or does not match its docs shard."""


def write_header(f: BinaryIO) -> None:
    f.write(MAGIC)


def encode(id_hash: int, n_offsets: int, starts: np.ndarray) -> bytes:
    """One record: ``n_offsets`` is ``len("\\n".join(sentences)) + 1``."""
    bits = np.zeros(n_offsets, dtype=np.uint8)
    bits[starts] = 1
    return _HDR.pack(id_hash, n_offsets) + np.packbits(bits).tobytes()


def read_records(f: BinaryIO, name: str = "") -> Iterator[tuple[int, int, np.ndarray]]:
    """``(id_hash, n_offsets, starts)`` per record, in file order."""
    if f.read(len(MAGIC)) != MAGIC:
        raise StartsFileError(f"{name or 'input'} is not a corpusflow word-starts file")
    i = 0
    while True:
        hdr = f.read(_HDR.size)
        if not hdr:
            return
        if len(hdr) < _HDR.size:
            raise StartsFileError(f"{name}: record {i} is truncated")
        id_hash, n = _HDR.unpack(hdr)
        nbytes = (n + 7) // 8
        data = f.read(nbytes)
        if len(data) < nbytes:
            raise StartsFileError(f"{name}: record {i} is truncated")
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n)
        yield id_hash, n, np.flatnonzero(bits)
        i += 1
