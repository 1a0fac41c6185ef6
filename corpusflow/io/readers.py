"""Read raw input files into ``Document`` and ``Reject`` records.

``read_file`` streams one file (bounded memory: chunks of decompressed bytes,
never a whole file, and never more than ``max_record_bytes`` of one line or
record) and yields a Document per good record and a Reject per bad one. Every
record counts ``read:records`` once, so ``records == documents + rejects``.

Layers: ``compression`` yields byte chunks (and flags truncation after the good
bytes), ``_iter_lines`` splits them into numbered lines, a per-format parser
groups lines into records, and ``formats`` turns records into Documents.
"""

from __future__ import annotations

import codecs
import re
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from corpusflow.counters import Inc, null_inc, register
from corpusflow.document import Document, Reject, excerpt, native_id
from corpusflow.io import formats
from corpusflow.io.compression import CorruptInput, WrongCompression, open_chunks
from corpusflow.io.opener import LOCAL, NotRegularFile, Opener
from corpusflow.io.formats import (ENCODINGS, FORMATS, FIRST_LINE_MAX_BYTES, GB18030_BOM,
                                   JSON_BUILDERS, SAMPLE_BYTES, UTF8_BOM, JSONError,
                                   detect_encoding, detect_format, parse_doc_header,
                                   text_record)

__all__ = ["FORMATS", "ENCODINGS", "READ_REASONS", "READ_COUNTERS", "read_file",
           "detect_format", "detect_encoding"]

STAGE = "read"

READ_REASONS = (
    "malformed_json",    # not JSON, or not a JSON object
    "missing_text",      # no text/content/answer field, or not a string
    "empty_text",        # text empty or whitespace only
    "invalid_utf8",      # a record of a UTF-8 file that does not decode
    "undecodable",       # auto: neither UTF-8 nor confidently GB18030; or a bad GB18030 record
    "record_too_large",  # a line (or wiki_doc/bert_text record) over max_record_bytes
    "malformed_doc",     # wiki_doc: bad <doc> header, block never closed, text outside blocks
    "truncated_file",    # archive/stream ended early or is corrupt: stands for the lost tail
    "unreadable_file",   # the file could not be opened
    "not_regular_file",  # a FIFO, device, socket or folder: never opened (it could block forever)
    "not_gzip",          # named .gz but not gzip data (a plain file, or another format)
    "not_bzip2",         # named .bz2 but not bzip2 data
    "not_zstd",          # named .zst/.zstd but not zstd data
)
_WRONG_COMPRESSION = {"gzip": "not_gzip", "bz2": "not_bzip2", "zstd": "not_zstd"}

_REJECTED = {r: f"read:rejected:{r}" for r in READ_REASONS}
READ_COUNTERS = register(("read:files", "read:records", "read:decoded:gb18030", *_REJECTED.values()))

# Bytes kept of a rejected line/record: enough for an excerpt of EXCERPT_CHARS
# characters at up to 4 bytes each.
_PREFIX_BYTES = 1024
# Counters are summed locally and pushed every this many records (and at the
# end), not per record: a Beam counter update per record is measurable at 30 GB.
_FLUSH_EVERY = 10_000

# Kinds of items from _iter_lines.
_LINE, _BIG, _TRUNC = 0, 1, 2

Record = Union[Document, Reject]
LineItem = tuple[int, Any, int]


def read_file(path: str, fmt: str = "auto", encoding: str = "auto", inc: Inc = null_inc,
              max_record_bytes: int = 16 * 2**20,
              opener: Opener = LOCAL) -> Iterator[Record]:
    """Stream ``path`` as Documents and Rejects (stage ``read``).

    ``fmt`` is one of ``FORMATS`` or ``auto`` (detected from the file's start);
    ``encoding`` one of ``ENCODINGS``. ``.gz``/``.bz2``/``.zst``/``.zstd`` files
    are decompressed here, so a truncated archive yields its complete records and
    then one ``truncated_file`` Reject for the lost tail. ``opener``
    (``corpusflow.io.opener``) opens the path; the default reads local files
    only, the pipelines pass one that also reads ``gs://`` and other URLs.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected 'auto' or one of {FORMATS}")
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")
    if max_record_bytes < 1:
        raise ValueError("max_record_bytes must be positive")
    return _counted(path, fmt, encoding, inc, max_record_bytes, opener)


def _counted(path: str, fmt: str, encoding: str, inc: Inc, max_bytes: int,
             opener: Opener) -> Iterator[Record]:
    # Counting here, around every parser, is what makes records == docs + rejects.
    inc("read:files")
    records = 0
    rejects: dict[str, int] = {}

    def flush() -> None:
        nonlocal records, rejects
        if records:
            inc("read:records", records)
        for reason, n in rejects.items():
            inc(_REJECTED[reason], n)
        records, rejects = 0, {}

    try:
        for item in _read(path, fmt, encoding, inc, max_bytes, opener):
            records += 1
            if type(item) is Reject:
                rejects[item.reason] = rejects.get(item.reason, 0) + 1
            if records >= _FLUSH_EVERY:
                flush()
            yield item
    finally:
        flush()


class _Peek:
    """Chunks from a stream with the first ones held back for sniffing."""

    def __init__(self, chunks: Iterator[bytes]):
        self._it = chunks
        self.head = b""
        self.eof = False
        self.error: Optional[CorruptInput] = None

    def fill(self, size: int) -> None:
        parts = [self.head]
        n = len(self.head)
        while n < size and not self.eof:
            try:
                c = next(self._it)
            except StopIteration:
                self.eof = True
            except CorruptInput as e:
                self.error, self.eof = e, True
            else:
                parts.append(c)
                n += len(c)
        self.head = b"".join(parts)

    @property
    def complete(self) -> bool:
        """The whole stream is in ``head`` (it ended cleanly, not cut short)."""
        return self.eof and self.error is None

    def chunks(self) -> Iterator[bytes]:
        head, self.head = self.head, b""
        if head:
            yield head
        if self.error is not None:
            raise self.error
        if not self.eof:
            yield from self._it


_FIRST_TEXT = re.compile(rb"\S")


def _first_line_end(head: bytes) -> int:
    """Index of the newline ending the first non-blank line, or -1."""
    m = _FIRST_TEXT.search(head)
    return -1 if m is None else head.find(b"\n", m.start())


def _read(path: str, fmt: str, encoding: str, inc: Inc, max_bytes: int,
          opener: Opener) -> Iterator[Record]:
    try:
        raw, chunks = open_chunks(path, opener)
    except NotRegularFile as e:  # checked before opening: a FIFO would block
        yield Reject(stage=STAGE, reason="not_regular_file", file=path, detail=f"{e.kind}, not read")
        return
    except WrongCompression as e:
        yield Reject(stage=STAGE, reason=_WRONG_COMPRESSION[e.compression], file=path,
                     detail=str(e))
        return
    except Exception as e:  # any opener failure (missing, permissions, remote errors)
        yield Reject(stage=STAGE, reason="unreadable_file", file=path,
                     detail=f"{type(e).__name__}: {e}")
        return
    try:
        peek = _Peek(chunks)
        peek.fill(SAMPLE_BYTES)
        if encoding == "auto":
            enc = detect_encoding(peek.head[:SAMPLE_BYTES],
                                  at_eof=peek.complete and len(peek.head) <= SAMPLE_BYTES)
        else:
            enc = encoding
        if enc == "utf-8" and peek.head.startswith(UTF8_BOM):
            peek.head = peek.head[len(UTF8_BOM):]
        elif enc == "gb18030" and peek.head.startswith(GB18030_BOM):
            peek.head = peek.head[len(GB18030_BOM):]
        if enc == "gb18030":
            inc("read:decoded:gb18030")
        if fmt == "auto":
            # A JSON first line longer than the sample is read on (up to a cap)
            # so it can be parsed whole.
            while (_first_line_end(peek.head) < 0 and not peek.eof
                   and len(peek.head) < FIRST_LINE_MAX_BYTES):
                peek.fill(len(peek.head) + SAMPLE_BYTES)
            end = _first_line_end(peek.head)
            n = max(SAMPLE_BYTES, end + 1) if end >= 0 else len(peek.head)
            fmt = detect_format(peek.head[:n], encoding=enc,
                                at_eof=peek.complete and len(peek.head) <= n)
        ctx = _Ctx(path, enc, max_bytes)
        yield from _PARSERS[fmt](ctx, _iter_lines(peek.chunks(), max_bytes))
    finally:
        try:
            raw.close()
        except Exception:  # closing a half-read remote stream may fail; nothing to save
            pass


def _head(pieces: Iterable[bytes]) -> bytes:
    """The first _PREFIX_BYTES of the concatenation of ``pieces``."""
    out = b""
    for p in pieces:
        out += p[:_PREFIX_BYTES - len(out)]
        if len(out) >= _PREFIX_BYTES:
            break
    return out


def _iter_lines(chunks: Iterable[bytes], max_bytes: int) -> Iterator[LineItem]:
    """Split byte chunks on ``b"\\n"`` into ``(line_number, payload, kind)``.

    ``_LINE``: payload is the line without ``\\n`` and one trailing ``\\r``.
    ``_BIG``: the line is over ``max_bytes``; payload is its first bytes (the rest
    was skipped, never held). ``_TRUNC`` (always last): the stream broke; payload
    is ``(first bytes of the incomplete last line, error text)``.
    """
    lineno = 0
    pend: list[bytes] = []  # pieces of the line being assembled across chunks
    pend_len = 0
    big: Optional[bytes] = None  # prefix of the too-large line being skipped
    try:
        for chunk in chunks:
            parts = chunk.split(b"\n")
            tail = parts.pop()
            if parts:
                if big is not None:
                    lineno += 1
                    yield lineno, _head((big, parts[0])), _BIG
                    big = None
                    del parts[0]
                elif pend:
                    pend.append(parts[0])
                    parts[0] = b"".join(pend)
                    pend, pend_len = [], 0
                for line in parts:
                    lineno += 1
                    if len(line) > max_bytes:
                        yield lineno, line[:_PREFIX_BYTES], _BIG
                    elif line.endswith(b"\r"):
                        yield lineno, line[:-1], _LINE
                    else:
                        yield lineno, line, _LINE
            if tail:
                if big is None:
                    pend.append(tail)
                    pend_len += len(tail)
                    if pend_len > max_bytes:
                        big = _head(pend)
                        pend, pend_len = [], 0
                elif len(big) < _PREFIX_BYTES:  # only when max_bytes < _PREFIX_BYTES
                    big = _head((big, tail))
            # Drop references before the next chunk is made: chunks can be big.
            chunk = parts = tail = line = None
    except CorruptInput as e:
        yield lineno + 1, (big if big is not None else _head(pend), str(e)), _TRUNC
        return
    if big is not None:
        yield lineno + 1, big, _BIG
    elif pend:
        line = b"".join(pend)
        yield lineno + 1, line[:-1] if line.endswith(b"\r") else line, _LINE


class _Ctx:
    """What the parsers of one file share: its path, codec and error wording."""

    def __init__(self, path: str, enc: str, max_bytes: int):
        self.path = path
        self.undecodable = enc == "undecodable"
        # Excerpts of an undecodable file are shown as UTF-8 with replacements.
        self.codec = "gb18030" if enc == "gb18030" else "utf-8"
        self.decode_reason = "invalid_utf8" if enc == "utf-8" else "undecodable"
        self.max_bytes = max_bytes
        # orjson parses and validates UTF-8 bytes in one pass; skip the decode.
        self.json_from_bytes = enc == "utf-8" and formats.orjson is not None

    def decode(self, raw: bytes) -> Optional[str]:
        if self.undecodable:
            return None
        try:
            return raw.decode(self.codec)
        except UnicodeDecodeError:
            return None

    def load_json(self, raw: bytes) -> tuple[Any, Optional[str]]:
        """``(object, None)`` or ``(None, reason)``."""
        if self.json_from_bytes:
            try:
                return formats.loads(raw), None
            except JSONError:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return None, "invalid_utf8"
                return None, "malformed_json"
        text = self.decode(raw)
        if text is None:
            return None, self.decode_reason
        try:
            return formats.loads(text), None
        except JSONError:
            return None, "malformed_json"

    def reject(self, reason: str, line: Optional[int], raw: bytes = b"",
               id: Optional[str] = None, detail: Optional[str] = None) -> Reject:
        head = raw[:_PREFIX_BYTES]
        text = codecs.getincrementaldecoder(self.codec)("replace").decode(
            head, final=len(raw) <= _PREFIX_BYTES)
        return Reject(stage=STAGE, reason=reason, id=id, file=self.path, line=line,
                      excerpt=excerpt(text), detail=detail)


def _truncated(ctx: _Ctx, line: int, head: bytes, payload: tuple[bytes, str]) -> Reject:
    """The one Reject standing for the lost tail: from ``line`` (where the
    incomplete record starts) with what was read of it."""
    tail, detail = payload
    if head and tail:
        head = head + b"\n" + tail
    return ctx.reject("truncated_file", line, head or tail, detail=detail)


# ---------------------------------------------------------------- parsers


def _json_lines(build: Callable[[dict, str, int], Any]) -> Callable[[_Ctx, Iterator[LineItem]], Iterator[Record]]:
    """A parser for a one-JSON-object-per-line format whose objects ``build`` converts."""

    def parse(ctx: _Ctx, lines: Iterator[LineItem]) -> Iterator[Record]:
        path = ctx.path
        for lineno, raw, kind in lines:
            if kind == _LINE:
                if not raw or raw.isspace():
                    continue
                obj, reason = ctx.load_json(raw)
                if reason is not None:
                    yield ctx.reject(reason, lineno, raw)
                elif type(obj) is not dict:
                    yield ctx.reject("malformed_json", lineno, raw, detail="not a JSON object")
                else:
                    res = build(obj, path, lineno)
                    if type(res) is Document:
                        yield res
                    else:
                        yield ctx.reject(res[0], lineno, raw, id=res[1])
            elif kind == _BIG:
                yield ctx.reject("record_too_large", lineno, raw)
            else:
                yield _truncated(ctx, lineno, b"", raw)

    return parse


def _text_lines(ctx: _Ctx, lines: Iterator[LineItem]) -> Iterator[Record]:
    """One document per non-blank line."""
    path = ctx.path
    for lineno, raw, kind in lines:
        if kind == _LINE:
            if not raw or raw.isspace():
                continue
            text = ctx.decode(raw)
            if text is None:
                yield ctx.reject(ctx.decode_reason, lineno, raw)
            elif not text.isspace():  # e.g. a line of only full-width spaces
                yield text_record(text, path, lineno)
        elif kind == _BIG:
            yield ctx.reject("record_too_large", lineno, raw)
        else:
            yield _truncated(ctx, lineno, b"", raw)


def _bert_text(ctx: _Ctx, lines: Iterator[LineItem]) -> Iterator[Record]:
    """Documents of consecutive non-blank lines (one sentence each), joined by "\\n"."""
    start = 0  # line where the current document starts; 0: none open
    texts: list[str] = []
    head = b""  # first bytes of the current document, for excerpts
    size = 0
    bad: Optional[str] = None

    def done() -> Record:
        if bad is not None:
            return ctx.reject(bad, start, head)
        return text_record("\n".join(texts), ctx.path, start)

    for lineno, raw, kind in lines:
        if kind == _TRUNC:
            yield _truncated(ctx, start or lineno, head if start else b"", raw)
            return
        if kind == _LINE:
            text = ctx.decode(raw)
            # Blank means Unicode whitespace only (as BERT's reader strips lines);
            # a line that does not decode can only be judged on its bytes.
            blank = (not raw or raw.isspace()) if text is None else (not text or text.isspace())
            if blank:
                if start:
                    yield done()
                    start, texts, head, size, bad = 0, [], b"", 0, None
                continue
        if not start:
            start, head = lineno, raw[:_PREFIX_BYTES]
        elif len(head) < _PREFIX_BYTES:
            head += b"\n" + raw[:_PREFIX_BYTES]
        if bad is not None:
            continue
        if kind == _BIG:
            bad, texts = "record_too_large", []
        elif text is None:
            bad, texts = ctx.decode_reason, []
        else:
            size += len(raw) + 1
            if size > ctx.max_bytes:
                bad, texts = "record_too_large", []
            else:
                texts.append(text)
    if start:
        yield done()


def _is_doc_open(raw: bytes) -> bool:
    return raw.startswith(b"<doc") and (len(raw) == 4 or raw[4] in b" \t>")


def _is_doc_close(raw: bytes) -> bool:
    return raw.startswith(b"</doc>") and (len(raw) == 6 or raw[6:].isspace())


def _wiki_doc(ctx: _Ctx, lines: Iterator[LineItem]) -> Iterator[Record]:
    """WikiExtractor ``<doc id url title>`` … ``</doc>`` blocks.

    Works on bytes (``<doc``/``</doc>`` are ASCII in UTF-8 and GB18030 alike) and
    decodes each body once. A block cut short by a new ``<doc`` or the end of
    file, a bad header, and text outside blocks are ``malformed_doc``.
    """
    start = 0  # line of the open block (or stray text); 0: none
    in_block = False
    attrs: Optional[dict[str, str]] = None
    body: list[bytes] = []
    head = b""
    size = 0
    bad: Optional[str] = None

    def done(unclosed: bool) -> Record:
        nid = None
        if attrs is not None and attrs.get("id", "").strip():
            nid = native_id("wiki", attrs["id"].strip())
        reason = bad or ("malformed_doc" if unclosed else None)
        if reason is not None:
            return ctx.reject(reason, start, head, id=nid)
        text = ctx.decode(b"\n".join(body))
        if text is None:
            return ctx.reject(ctx.decode_reason, start, head, id=nid)
        return _wiki_doc_record(ctx, attrs or {}, text, start, head)

    for lineno, raw, kind in lines:
        if kind == _TRUNC:
            yield _truncated(ctx, start or lineno, head if start else b"", raw)
            return
        if kind == _LINE and _is_doc_open(raw):
            if start:
                yield done(unclosed=True)
            start, in_block, body, head, size = lineno, True, [], raw[:_PREFIX_BYTES], 0
            header = ctx.decode(raw)
            attrs = parse_doc_header(header) if header is not None else None
            bad = (ctx.decode_reason if header is None
                   else "malformed_doc" if attrs is None else None)
            continue
        if kind == _LINE and in_block and _is_doc_close(raw):
            yield done(unclosed=False)
            start, in_block, attrs, body, head, size, bad = 0, False, None, [], b"", 0, None
            continue
        if not in_block:
            # Text outside any block: blank lines are fine; anything else is
            # stray text, one malformed_doc per run of non-blank lines.
            if kind == _LINE and (not raw or raw.isspace()):
                if start:
                    yield done(unclosed=False)
                    start, head, bad = 0, b"", None
                continue
            if not start:
                start, head, attrs = lineno, raw[:_PREFIX_BYTES], None
                bad = "record_too_large" if kind == _BIG else "malformed_doc"
            elif len(head) < _PREFIX_BYTES:
                head += b"\n" + raw[:_PREFIX_BYTES]
            continue
        if len(head) < _PREFIX_BYTES:
            head += b"\n" + raw[:_PREFIX_BYTES]
        if bad is not None:
            continue
        size += len(raw) + 1
        if kind == _BIG or size > ctx.max_bytes:
            bad, body = "record_too_large", []
        else:
            body.append(raw)
    if start:
        yield done(unclosed=in_block)


def _wiki_doc_record(ctx: _Ctx, attrs: dict[str, str], body: str, line: int,
                     head: bytes) -> Record:
    """A Document from a closed block, or the Reject its content earns."""
    title = attrs.get("title", "")
    obj = {"title": title, "text": body}
    if attrs.get("id", "").strip():
        obj["id"] = attrs["id"]
    if attrs.get("url"):
        obj["url"] = attrs["url"]
    res = formats.wiki_record(obj, ctx.path, line)
    if type(res) is Document:
        return res
    return ctx.reject(res[0], line, head, id=res[1])


_PARSERS: dict[str, Callable[[_Ctx, Iterator[LineItem]], Iterator[Record]]] = {
    "wiki_json": _json_lines(JSON_BUILDERS["wiki_json"]),
    "baike_json": _json_lines(JSON_BUILDERS["baike_json"]),
    "news_json": _json_lines(JSON_BUILDERS["news_json"]),
    "text_lines": _text_lines,
    "bert_text": _bert_text,
    "wiki_doc": _wiki_doc,
}
