"""Format and encoding detection, and turning parsed records into Documents.

Everything here works on small in-memory inputs (a file's first bytes, one
parsed JSON object); streaming and record boundaries live in ``readers``.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any, Optional, Union

from corpusflow.document import Document, content_id, native_id

try:  # orjson is ~3x faster; the stdlib fallback below is made to agree with it.
    import orjson
except ImportError:  # pragma: no cover - exercised by monkeypatching in tests
    orjson = None

FORMATS = ("wiki_json", "wiki_doc", "baike_json", "news_json", "bert_text", "text_lines")
ENCODINGS = ("utf-8", "gb18030", "auto")

# How much of a file's start is looked at to pick its encoding and format.
SAMPLE_BYTES = 64 * 1024
# A first line longer than the sample is read on up to this size to see it whole.
FIRST_LINE_MAX_BYTES = 1 << 20
# How many leading JSON lines may be tried before giving up on a JSON format
# (so one malformed first line does not turn a news dump into plain text).
JSON_PROBE_LINES = 20

UTF8_BOM = b"\xef\xbb\xbf"
GB18030_BOM = b"\x84\x31\x95\x33"

# A UTF-8 file may hold a few bad lines; GBK text decoded as UTF-8 yields mostly
# errors (~90% of its non-ASCII characters). So the sample counts as UTF-8 when
# invalid sequences are at most 1/20 of the valid non-ASCII characters.
UTF8_MAX_BAD_PER_GOOD = 1 / 20
# GB18030 decodes nearly any byte string, so it also needs the CJK share below;
# a stray broken character (≤ 1%) must not make a whole GB18030 file unreadable.
GB18030_MAX_BAD_SHARE = 0.01
GB18030_MIN_CJK_SHARE = 0.30

_CJK_RUN = re.compile("[\u4e00-\u9fff]+")
_ASCII_WS = dict.fromkeys(map(ord, " \t\n\r\f\v"))

Built = Union[Document, tuple[str, Optional[str]]]


class JSONError(ValueError):
    """A line that is not valid JSON (under orjson's rules, whichever parser ran)."""


def _no_constants(name: str) -> Any:
    raise JSONError(f"{name} is not JSON")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(data: Union[bytes, str]) -> Any:
    """Parse JSON; raises ``JSONError``.

    orjson rejects NaN/Infinity and lone surrogates, which the stdlib accepts; the
    fallback rejects them too so results do not depend on orjson being installed
    (a lone surrogate would also crash every UTF-8 writer downstream).
    """
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise JSONError(str(e)) from None
    try:
        obj = json.loads(data, parse_constant=_no_constants)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise JSONError(str(e)) from None
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JSONError("lone surrogate") from None
    return obj


# ---------------------------------------------------------------- detection


def _decode_sample(sample: bytes, codec: str, at_eof: bool) -> str:
    # An incremental decoder keeps a multibyte character cut at the sample's end
    # instead of reporting it as an error.
    return codecs.getincrementaldecoder(codec)("replace").decode(sample, final=at_eof)


def detect_encoding(sample: bytes, at_eof: bool = False) -> str:
    """``utf-8``, ``gb18030`` or ``undecodable`` for a file starting with ``sample``.

    ``at_eof`` says the sample is the whole file (so a cut character at its end
    is an error, not the sample's edge).
    """
    if sample.startswith(UTF8_BOM):
        return "utf-8"
    if sample.startswith(GB18030_BOM):
        return "gb18030"
    text = _decode_sample(sample, "utf-8", at_eof)
    bad = text.count("\ufffd")
    if bad == 0:
        return "utf-8"
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    if bad <= (non_ascii - bad) * UTF8_MAX_BAD_PER_GOOD:
        return "utf-8"
    text = _decode_sample(sample, "gb18030", at_eof)
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    if text.count("\ufffd") > non_ascii * GB18030_MAX_BAD_SHARE:
        return "undecodable"
    visible = len(text.translate(_ASCII_WS))
    cjk = sum(map(len, _CJK_RUN.findall(text)))
    if visible and cjk >= visible * GB18030_MIN_CJK_SHARE:
        return "gb18030"
    return "undecodable"


def json_kind(obj: Any) -> Optional[str]:
    """The JSON format a parsed object belongs to, or None."""
    if not isinstance(obj, dict):
        return None
    if "qid" in obj:
        return "baike_json"
    if "news_id" in obj:
        return "news_json"
    if "text" in obj or "paragraphs" in obj:
        return "wiki_json"
    return None


# Keys looked for in a first line too long to parse whole; (?<!\\) skips an
# escaped quote inside a string value.
_KEY_HINTS = (("baike_json", re.compile(r'(?<!\\)"qid"\s*:')),
              ("news_json", re.compile(r'(?<!\\)"news_id"\s*:')),
              ("wiki_json", re.compile(r'(?<!\\)"(?:text|paragraphs)"\s*:')))


def detect_format(first_bytes: bytes, *, encoding: str = "utf-8", at_eof: bool = True) -> str:
    """Pick one of ``FORMATS`` from a file's first bytes.

    The first non-empty line decides: ``<doc `` is wiki_doc; a JSON object with
    ``qid`` / ``news_id`` / ``text`` or ``paragraphs`` is baike / news / wiki json
    (the first few JSON lines are tried, so one malformed line does not decide);
    anything else is text: bert_text when a blank line separates non-empty lines,
    else text_lines. ``at_eof=False`` marks the last line of ``first_bytes`` as
    possibly cut.
    """
    codec = "gb18030" if encoding == "gb18030" else "utf-8"
    text = _decode_sample(first_bytes, codec, at_eof).lstrip("\ufeff")
    lines = text.split("\n")
    cut = None if at_eof else lines.pop()
    nonblank = [ln for ln in lines if ln.strip()]
    first = nonblank[0] if nonblank else (cut or "")
    # No lstrip here: the wiki_doc parser also wants "<doc" at the line start.
    if first.startswith("<doc ") or first.rstrip() == "<doc>":
        return "wiki_doc"
    if first.lstrip().startswith("{"):
        for ln in [ln for ln in nonblank if ln.lstrip().startswith("{")][:JSON_PROBE_LINES]:
            try:
                kind = json_kind(loads(ln))
            except JSONError:
                continue
            if kind:
                return kind
        if not nonblank and cut is not None:
            # The first line is longer than the sample: guess from its keys (a
            # nested key can fool this; it is the last resort).
            for kind, pattern in _KEY_HINTS:
                if pattern.search(cut):
                    return kind
    if cut:
        lines.append(cut)
    return "bert_text" if _blank_between(lines) else "text_lines"


def _blank_between(lines: list[str]) -> bool:
    seen_text = gap = False
    for ln in lines:
        if ln.strip():
            if gap:
                return True
            seen_text = True
        elif seen_text:
            gap = True
    return False


# ---------------------------------------------------------------- records


def _str(obj: dict, key: str) -> str:
    v = obj.get(key)
    return v if isinstance(v, str) else ""


def _raw_id(obj: dict, key: str) -> Optional[str]:
    """A usable native id (non-empty string or integer), else None."""
    v = obj.get(key)
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str) and v.strip():
        return v.strip()
    return None


def _meta(file: str, line: int, obj: dict, keys: tuple[str, ...]) -> dict[str, Any]:
    meta: dict[str, Any] = {"file": file, "line": line}
    for k in keys:
        v = obj.get(k)
        if isinstance(v, str) and v:
            meta[k] = v
    return meta


def wiki_text(title: str, text: str) -> str:
    """Drop the repeated title line WikiExtractor puts first, and outer blank lines.

    Applied to both wiki formats so one article read from ``.doc.txt`` and from
    ``.jsonl`` gives the same text (the JSON ``text`` is the ``<doc>`` body).
    """
    first, _, rest = text.partition("\n")
    if title and first.strip() == title.strip():
        text = rest
    return text.strip("\n")


def wiki_record(obj: dict, file: str, line: int) -> Built:
    """wiki2019zh ``{"id","url","title","text"}`` (or ``paragraphs``) → Document."""
    title = _str(obj, "title")
    rid = _raw_id(obj, "id")
    nid = native_id("wiki", rid) if rid is not None else None
    text = obj.get("text")
    if text is None and "paragraphs" in obj:
        paras = obj["paragraphs"]
        if not isinstance(paras, list) or not all(isinstance(p, str) for p in paras):
            return ("missing_text", nid)
        text = "\n".join(paras)
    if not isinstance(text, str):
        return ("missing_text", nid)
    text = wiki_text(title, text)
    if not text.strip():
        return ("empty_text", nid)
    return Document(id=nid or content_id("wiki", title, text), source="wiki", title=title,
                    text=text, meta=_meta(file, line, obj, ("url",)))


def baike_record(obj: dict, file: str, line: int) -> Built:
    """baike2018qa ``{"qid","category","title","desc","answer"}`` → Document."""
    rid = _raw_id(obj, "qid")
    nid = native_id("baike", rid) if rid is not None else None
    answer = obj.get("answer")
    if not isinstance(answer, str):
        return ("missing_text", nid)
    if not answer.strip():
        return ("empty_text", nid)
    title = _str(obj, "title")
    text = "\n".join(p for p in (title, _str(obj, "desc"), answer) if p.strip())
    return Document(id=nid or content_id("baike", title, text), source="baike", title=title,
                    text=text, meta=_meta(file, line, obj, ("category",)))


def news_record(obj: dict, file: str, line: int) -> Built:
    """news2016zh ``{"news_id","keywords","desc","title","source","time","content"}`` → Document."""
    rid = _raw_id(obj, "news_id")
    nid = native_id("news", rid) if rid is not None else None
    text = obj.get("content")
    if not isinstance(text, str):
        return ("missing_text", nid)
    if not text.strip():
        return ("empty_text", nid)
    title = _str(obj, "title")
    return Document(id=nid or content_id("news", title, text), source="news", title=title,
                    text=text, meta=_meta(file, line, obj, ("keywords", "source", "time")))


JSON_BUILDERS = {"wiki_json": wiki_record, "baike_json": baike_record, "news_json": news_record}


def text_record(text: str, file: str, line: int) -> Document:
    """A plain-text document (bert_text or text_lines); its id comes from its content."""
    return Document(id=content_id("text", "", text), source="text", title="", text=text,
                    meta={"file": file, "line": line})


# WikiExtractor writes ``<doc id="…" url="…" title="…">`` with the title not
# escaped, so a value may contain a quote: the lazy value plus the lookahead for
# the next attribute (or the tag's end) splits it correctly.
_HEADER = re.compile(r'<doc((?:\s+[A-Za-z_][\w.-]*=".*?")*)\s*>\s*\Z')
_ATTR = re.compile(r'\s+([A-Za-z_][\w.-]*)="(.*?)"(?=\s+[A-Za-z_][\w.-]*="|\s*\Z)')
_HEADER_MAX_CHARS = 4096  # longer is not a header; also bounds regex backtracking


def parse_doc_header(line: str) -> Optional[dict[str, str]]:
    """Attributes of a ``<doc …>`` line, or None when it is malformed."""
    if len(line) > _HEADER_MAX_CHARS:
        return None
    m = _HEADER.match(line.strip())
    if not m:
        return None
    return dict(_ATTR.findall(m.group(1)))
