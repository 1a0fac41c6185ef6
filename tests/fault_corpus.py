"""A deterministic fault-injection corpus for the readers and the pipeline tests.

``build_fault_corpus(root)`` writes files in every input format with known
faults (malformed JSON, missing/empty text, invalid UTF-8, GBK encoding,
truncated .gz/.zst archives, an unclosed ``<doc>``, a 50 MB line, an
undecodable file) and returns the expected counts, computed while building —
never by running the reader.

Good documents are random sequences of common hanzi (GB2312 level 1) with
punctuation: at least 60 CJK characters each, and all distinct, so a cleaning
stage with a ~20 character minimum keeps them and exact dedup removes none.
"""

from __future__ import annotations

import bz2
import collections
import json
import random
import zlib
from pathlib import Path
from typing import Any

import zstandard

SEED = 1234
NEWS_LINES = 10_000
HUGE_LINE_BYTES = 50 * 2**20


# Random bytes are mapped onto GB2312 level-1 code points (rows 0xB0-0xD6, cells
# 0xA1-0xFE: common hanzi, all also valid GBK) and decoded in one C call; a
# per-character random.choice would make building the corpus take seconds.
_ROW = bytes(0xB0 + x % 39 for x in range(256))
_CELL = bytes(0xA1 + x % 94 for x in range(256))


class _TextGen:
    """Random, distinct Chinese paragraphs from one seeded ``random.Random``."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.seen: set[str] = set()

    def hanzi(self, n: int) -> str:
        buf = bytearray(2 * n)
        buf[0::2] = self.rng.randbytes(n).translate(_ROW)
        buf[1::2] = self.rng.randbytes(n).translate(_CELL)
        return buf.decode("gb2312")

    def sentence(self, lo: int, hi: int) -> str:
        n = self.rng.randint(lo, hi)
        chars = self.hanzi(n)
        # A comma every 6-14 characters (replacing one), like real prose.
        out, prev, i = [], 0, self.rng.randint(6, 14)
        while i < n - 4:
            out += (chars[prev:i], "，")
            prev, i = i + 1, i + self.rng.randint(6, 14)
        out.append(chars[prev:])
        return "".join(out) + "。"

    def paragraph(self, lo: int = 80, hi: int = 160) -> str:
        """A paragraph not made before; ``lo`` = 80 leaves ≥ 66 CJK characters after commas."""
        while True:
            text = self.sentence(lo, hi)
            if text not in self.seen:
                self.seen.add(text)
                return text

    def title(self) -> str:
        return self.hanzi(self.rng.randint(4, 10))


class _Tally:
    def __init__(self) -> None:
        self.per_file: dict[str, dict[str, Any]] = {}

    def file(self, path: Path, documents: int, **rejects: int) -> None:
        rejects = {k: v for k, v in rejects.items() if v}
        self.per_file[path.name] = {"path": str(path), "documents": documents,
                                    "rejects": rejects,
                                    "records": documents + sum(rejects.values())}


def _jsonl(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n"


def _news(gen: _TextGen, i: int, **override: Any) -> dict:
    obj = {"news_id": f"fault-news-{i:05d}", "keywords": "测试,新闻", "desc": gen.title(),
           "title": gen.title(), "source": "fault.example", "time": "2016-01-01 08:00",
           "content": gen.paragraph()}
    obj.update(override)
    return obj


def _news_file(root: Path, gen: _TextGen, tally: _Tally) -> Path:
    rng = gen.rng
    n_malformed, n_missing, n_empty = NEWS_LINES // 100, 25, 25
    # Line 1 stays good (format detection reads the first line).
    bad = rng.sample(range(1, NEWS_LINES), n_malformed + n_missing + n_empty + 1)
    kinds = {}
    for j, idx in enumerate(bad):
        kinds[idx] = ("malformed" if j < n_malformed else
                      "missing" if j < n_malformed + n_missing else
                      "empty" if j < n_malformed + n_missing + n_empty else "utf8")
    malformed = [
        lambda i: _jsonl(_news(gen, i))[:40] + b"\n",               # cut-off object
        lambda i: b'{"news_id": "x", content: "' + gen.paragraph().encode() + b'"}\n',
        lambda i: gen.paragraph().encode() + b"\n",                  # not JSON at all
        lambda i: b"[1, 2, 3]\n",                                    # JSON, not an object
        lambda i: json.dumps(gen.paragraph(), ensure_ascii=False).encode() + b"\n",
        lambda i: b'{"news_id": "n", "content": NaN}\n',             # NaN is not JSON
    ]
    missing = [
        lambda i: {k: v for k, v in _news(gen, i).items() if k != "content"},
        lambda i: _news(gen, i, content=None),
        lambda i: _news(gen, i, content=12345),
    ]
    empty = [
        lambda i: _news(gen, i, content=""),
        lambda i: _news(gen, i, content="  \n\t "),
        lambda i: _news(gen, i, content="\u3000\u3000"),
    ]
    path = root / "news_10k.jsonl"
    counts = collections.Counter()
    with open(path, "wb") as f:
        for i in range(NEWS_LINES):
            kind = kinds.get(i)
            if kind is None:
                f.write(_jsonl(_news(gen, i)))
                counts["doc"] += 1
            elif kind == "malformed":
                f.write(malformed[counts[kind] % len(malformed)](i))
            elif kind == "missing":
                f.write(_jsonl(missing[counts[kind] % len(missing)](i)))
            elif kind == "empty":
                f.write(_jsonl(empty[counts[kind] % len(empty)](i)))
            else:  # GBK bytes inside an otherwise fine JSON line
                f.write(b'{"news_id": "fault-news-bad-utf8", "content": "'
                        + gen.paragraph().encode("gbk") + b'"}\n')
            if kind:
                counts[kind] += 1
    tally.file(path, counts["doc"], malformed_json=counts["malformed"],
               missing_text=counts["missing"], empty_text=counts["empty"],
               invalid_utf8=counts["utf8"])
    return path


def _gbk_file(root: Path, gen: _TextGen, tally: _Tally) -> Path:
    path = root / "gbk_lines.txt"
    lines = [gen.paragraph() for _ in range(40)]
    path.write_bytes("".join(ln + "\n" for ln in lines).encode("gbk"))
    tally.file(path, len(lines))
    return path


def _wiki(gen: _TextGen, i: int) -> dict:
    title = gen.title()
    # WikiExtractor repeats the title as the first line; the reader drops it.
    return {"id": str(200_000 + i), "url": f"https://zh.wikipedia.org/wiki?curid={200_000 + i}",
            "title": title, "text": f"{title}\n\n{gen.paragraph()}\n\n{gen.paragraph()}\n"}


def _truncated_gz(root: Path, gen: _TextGen, tally: _Tally) -> Path:
    path = root / "wiki_truncated.jsonl.gz"
    complete = [_jsonl(_wiki(gen, i)) for i in range(30)]
    partial = _jsonl(_wiki(gen, 30))
    data = b"".join(complete) + partial[: len(partial) // 2]
    # A sync flush makes every byte so far decodable, and leaving out the final
    # block and trailer makes the stream end early, as a cut-off copy does.
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    path.write_bytes(comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH))
    tally.file(path, len(complete), truncated_file=1)
    return path


def _baike(gen: _TextGen, i: int) -> dict:
    return {"qid": f"fault-baike-{i}", "category": "测试/问答", "title": gen.title() + "？",
            "desc": gen.paragraph(20, 40) if i % 2 else "", "answer": gen.paragraph()}


def _truncated_zst(root: Path, gen: _TextGen, tally: _Tally) -> Path:
    path = root / "baike_truncated.jsonl.zst"
    complete = [_jsonl(_baike(gen, i)) for i in range(25)]
    partial = _jsonl(_baike(gen, 25))
    data = b"".join(complete) + partial[: len(partial) // 2]
    comp = zstandard.ZstdCompressor(level=3).compressobj()
    # Flushing a block but never ending the frame: decodable, yet unfinished.
    path.write_bytes(comp.compress(data) + comp.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    tally.file(path, len(complete), truncated_file=1)
    return path


def _good_bz2(root: Path, gen: _TextGen, tally: _Tally) -> Path:
    path = root / "news_good.jsonl.bz2"
    records = [_news(gen, 50_000 + i) for i in range(30)]
    path.write_bytes(bz2.compress(b"".join(_jsonl(r) for r in records)))
    tally.file(path, len(records))
    return path


def _wiki_doc_file(root: Path, gen: _TextGen, tally: _Tally) -> Path:
    path = root / "wiki_unclosed.doc.txt"
    out = []
    for i in range(12):
        w = _wiki(gen, 1000 + i)
        out.append(f'<doc id="{w["id"]}" url="{w["url"]}" title="{w["title"]}">\n{w["text"]}</doc>\n')
    # A header whose title is not quoted: the whole block is malformed_doc.
    out.insert(5, f'<doc id="301000" url="x" title={gen.title()}>\n{gen.paragraph()}\n</doc>\n')
    w = _wiki(gen, 2000)
    out.append(f'<doc id="{w["id"]}" url="{w["url"]}" title="{w["title"]}">\n{w["text"]}')
    path.write_text("".join(out), encoding="utf-8")
    tally.file(path, 12, malformed_doc=2)
    return path


def _huge_line_file(root: Path, gen: _TextGen, tally: _Tally) -> Path:
    path = root / "huge_line.txt"
    chunk = ("这是一行特别长的文字，" * 3000).encode("utf-8")
    with open(path, "wb") as f:
        for _ in range(3):
            f.write(gen.paragraph().encode() + b"\n")
        written = 0
        while written < HUGE_LINE_BYTES:  # written in pieces, never held whole
            f.write(chunk)
            written += len(chunk)
        f.write(b"\n")
        for _ in range(3):
            f.write(gen.paragraph().encode() + b"\n")
    tally.file(path, 6, record_too_large=1)
    return path


def _bert_file(root: Path, gen: _TextGen, tally: _Tally) -> Path:
    path = root / "bert_docs.txt"
    docs = []
    for i in range(20):
        sents = [gen.paragraph(25, 45) for _ in range(gen.rng.randint(3, 5))]  # ≥ 66 CJK
        eol = "\r\n" if i % 5 == 4 else "\n"  # some CRLF documents
        docs.append(eol.join(sents) + eol)
    # Separators: blank lines, a doubled one, and a line of full-width spaces.
    seps = ["\n", "\n\n", "\u3000\u3000\n"]
    text = docs[0] + "".join(seps[i % 3] + d for i, d in enumerate(docs[1:]))
    path.write_text(text, encoding="utf-8")
    tally.file(path, len(docs))
    return path


def _undecodable_file(root: Path, gen: _TextGen, tally: _Tally) -> Path:
    path = root / "latin1_lines.txt"
    lines = ["Café crème, s'il vous plaît, très bien.", "Voilà déjà l'été à Orléans.",
             "Noël à Besançon: garçon, où est le façonnier?", "Ça coûte très cher, à peu près.",
             "Le maître d'hôtel a été aimable."]
    path.write_bytes("".join(ln + "\n" for ln in lines).encode("latin-1"))
    tally.file(path, 0, undecodable=len(lines))
    return path


def build_fault_corpus(root: Path) -> dict:
    """Write the fault corpus under ``root``; return what reading it must give.

    ``{"files": [paths], "records": N, "documents": N_good, "rejects": {reason: n},
    "counters": {...exact read counters...}, "per_file": {name: {...}}}``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    gen = _TextGen(random.Random(SEED))
    tally = _Tally()
    files = [build(root, gen, tally) for build in (
        _news_file, _gbk_file, _truncated_gz, _truncated_zst, _good_bz2,
        _wiki_doc_file, _huge_line_file, _bert_file, _undecodable_file)]
    rejects: collections.Counter = collections.Counter()
    for info in tally.per_file.values():
        rejects.update(info["rejects"])
    documents = sum(info["documents"] for info in tally.per_file.values())
    records = documents + sum(rejects.values())
    counters = {"read:files": len(files), "read:records": records,
                "read:decoded:gb18030": 1,
                **{f"read:rejected:{r}": n for r, n in rejects.items()}}
    return {"files": [str(p) for p in files], "records": records, "documents": documents,
            "rejects": dict(sorted(rejects.items())), "counters": dict(sorted(counters.items())),
            "per_file": tally.per_file}
