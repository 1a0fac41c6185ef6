"""TFRecord framing without TensorFlow (so Beam workers never import TF).

Format: ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Iterator

import google_crc32c

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def tfrecord_frame(data: bytes) -> bytes:
    """One record framed as TFRecord."""
    length = _U64.pack(len(data))
    return b"".join((length, _U32.pack(masked_crc32c(length)), data,
                     _U32.pack(masked_crc32c(data))))


def read_tfrecords(f: BinaryIO, verify: bool = True) -> Iterator[bytes]:
    """Iterate the records of an uncompressed TFRecord stream."""
    while True:
        head = f.read(12)
        if not head:
            return
        if len(head) < 12:
            raise ValueError("truncated TFRecord header")
        (length,) = _U64.unpack(head[:8])
        if verify and _U32.unpack(head[8:])[0] != masked_crc32c(head[:8]):
            raise ValueError("TFRecord length CRC mismatch")
        data = f.read(length)
        tail = f.read(4)
        if len(data) < length or len(tail) < 4:
            raise ValueError("truncated TFRecord")
        if verify and _U32.unpack(tail)[0] != masked_crc32c(data):
            raise ValueError("TFRecord data CRC mismatch")
        yield data
