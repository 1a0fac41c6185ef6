"""Opening input files and streaming their (decompressed) bytes in chunks.

Decompression is done here, not by Beam, so that truncation and corruption are
detected the same way for every codec (``zstandard``'s stream reader, for one,
ends a truncated stream silently, turning a half-copied shard into a clean,
shorter one). ``iter_chunks`` yields every byte that decoded and only then
raises ``CorruptInput``, so the caller keeps the good records before the damage.
"""

from __future__ import annotations

import bz2
import gzip
import zlib
from typing import BinaryIO, Iterator, Optional

from corpusflow.io.opener import LOCAL, Opener

# Decompressed bytes per chunk handed to the line splitter.
CHUNK_BYTES = 1 << 20

# zstd input is fed in small slices because one decompress call returns all the
# output its input makes, and a 50 MB run of one repeated line compresses to
# ~2 KB. A zstd block holds at most 128 KB and takes at least 4 bytes, so a
# 256-byte slice yields at most 8 MB (measured: 2.8 MB for a repeated line; a
# few KB for real text). Cost: ~580 MB/s of output vs ~820 MB/s with 64 KB slices.
_ZSTD_SLICE = 256


class CorruptInput(Exception):
    """The (compressed) stream ended early or is damaged; raised after all good data."""


class WrongCompression(Exception):
    """The file is not in the compression its name claims (a plain file named ``.gz``)."""

    def __init__(self, compression: str, head: bytes) -> None:
        super().__init__(f"named as {compression} but starts with {head[:4].hex() or 'nothing'}")
        self.compression = compression


# What a stream of each compression starts with (zstd: a frame or a skippable frame).
_MAGIC = {"gzip": (b"\x1f\x8b",), "bz2": (b"BZh",),
          "zstd": (b"\x28\xb5\x2f\xfd",) + tuple(bytes([b, 0x2a, 0x4d, 0x18]) for b in range(0x50, 0x60))}


class _Prefixed:
    """A read-only stream: ``head`` (already read for sniffing) and then the rest of ``raw``."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._raw.read(n)
        if n is None or n < 0:
            out, self._head = self._head + self._raw.read(), b""
            return out
        out, self._head = self._head[:n], self._head[n:]
        if len(out) < n:
            out += self._raw.read(n - len(out))
        return out

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed


def compression_of(path: str) -> str:
    """``gzip``, ``bz2``, ``zstd`` or ``none``, from the file name's extension."""
    p = path.lower()
    if p.endswith(".gz"):
        return "gzip"
    if p.endswith(".bz2"):
        return "bz2"
    if p.endswith((".zst", ".zstd")):
        return "zstd"
    return "none"


def iter_chunks(raw: BinaryIO, compression: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield the decompressed content of ``raw`` in chunks of about ``chunk_bytes``.

    Raises ``CorruptInput`` (after yielding everything decodable) when the stream
    is truncated, fails its CRC or is not in the claimed format. Errors of the
    underlying stream itself propagate unchanged.
    """
    if compression == "none":
        return _plain_chunks(raw, chunk_bytes)
    if compression == "gzip":
        return _buffered_chunks(gzip.GzipFile(fileobj=raw, mode="rb"), chunk_bytes)
    if compression == "bz2":
        return _buffered_chunks(bz2.BZ2File(raw, mode="rb"), chunk_bytes)
    if compression == "zstd":
        return _zstd_chunks(raw, chunk_bytes)
    raise ValueError(f"unknown compression {compression!r}")


def _plain_chunks(raw: BinaryIO, chunk_bytes: int) -> Iterator[bytes]:
    # Read errors propagate: an I/O failure (often transient, e.g. a dropped
    # connection) must fail the work item so the runner retries it, not turn the
    # rest of the file into a reject.
    while True:
        data = raw.read(chunk_bytes)
        if not data:
            return
        yield data


def _is_data_error(e: BaseException) -> bool:
    """Whether a decompressor's exception means damaged data (not an I/O failure)."""
    if isinstance(e, (EOFError, zlib.error, gzip.BadGzipFile)):
        return True
    # bz2 reports bad data as a bare OSError without errno; OS and network
    # errors carry an errno or are subclasses (ConnectionError, ...).
    return type(e) is OSError and e.errno is None


def _buffered_chunks(f: BinaryIO, chunk_bytes: int) -> Iterator[bytes]:
    # read1, not read: BufferedReader.read(n) loops over raw reads and drops what
    # it already gathered when a later raw read raises (EOFError on truncation).
    try:
        while True:
            try:
                data = f.read1(chunk_bytes)
            except (EOFError, OSError, zlib.error) as e:
                # EOFError: truncated; BadGzipFile: bad CRC, length or magic;
                # zlib.error: bad deflate data; OSError "Invalid data stream": bz2.
                if not _is_data_error(e):
                    raise
                raise CorruptInput(f"{type(e).__name__}: {e}") from e
            if not data:
                return
            yield data
    finally:
        f.close()


def _zstd_chunks(raw: BinaryIO, chunk_bytes: int) -> Iterator[bytes]:
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    frame_open = False  # input fed to the current frame and its end not seen yet
    buf: list[bytes] = []  # small outputs gathered into chunks of ~chunk_bytes
    buf_len = 0
    error: Optional[CorruptInput] = None
    while error is None:
        comp = raw.read(chunk_bytes)  # I/O errors propagate (see _plain_chunks)
        if not comp:
            if frame_open:
                # An empty file reads as empty (as with gzip); otherwise the
                # last frame must have ended.
                error = CorruptInput("zstd stream ended before the end of its frame")
            break
        view = memoryview(comp)
        for pos in range(0, len(view), _ZSTD_SLICE):
            outs = []
            try:
                outs.append(dobj.decompress(view[pos:pos + _ZSTD_SLICE]))
                frame_open = True
                # A finished frame leaves the rest of the input (the next frame of
                # a multi-frame file, or trailing garbage) in unused_data.
                while dobj.eof:
                    rest = dobj.unused_data
                    dobj = dctx.decompressobj()
                    frame_open = bool(rest)
                    if not rest:
                        break
                    outs.append(dobj.decompress(rest))
            except zstandard.ZstdError as e:
                error = CorruptInput(f"ZstdError: {e}")
            for out in outs:
                if len(out) >= chunk_bytes:
                    # A big output goes on as it is: joining or slicing would copy it.
                    if buf:
                        yield b"".join(buf)
                        buf, buf_len = [], 0
                    yield out
                elif out:
                    buf.append(out)
                    buf_len += len(out)
                    if buf_len >= chunk_bytes:
                        yield b"".join(buf)
                        buf, buf_len = [], 0
            outs = out = None  # do not hold a big output while making the next one
            if error is not None:
                break
    if buf:
        yield b"".join(buf)
    if error is not None:
        raise error


def open_chunks(path: str, opener: Opener = LOCAL) -> tuple[BinaryIO, Iterator[bytes]]:
    """Open ``path`` with ``opener`` and return ``(raw_stream, chunks)``; the caller closes ``raw_stream``.

    Opening errors propagate (the caller reports ``unreadable_file``, or
    ``not_regular_file`` for ``opener.NotRegularFile``); a file whose first bytes
    are not its claimed compression's magic raises ``WrongCompression`` (an empty
    file reads as empty).
    """
    raw = opener.open(path, "rb")
    compression = compression_of(path)
    if compression == "none":
        return raw, iter_chunks(raw, compression)
    try:
        head = raw.read(4)
        while 0 < len(head) < 4:
            more = raw.read(4 - len(head))
            if not more:
                break
            head += more
    except Exception:
        raw.close()
        raise
    if head and not head.startswith(_MAGIC[compression]):
        raw.close()
        raise WrongCompression(compression, head)
    return raw, iter_chunks(_Prefixed(head, raw), compression)
