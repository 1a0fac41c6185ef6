"""Tests for corpusflow.io.readers: formats, reasons, compression, encodings."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import tracemalloc
import zlib
from pathlib import Path

import pytest
import zstandard

from corpusflow.counters import CounterDict, vocabulary
from corpusflow.document import Document, Reject, content_id
from corpusflow.io import formats
from corpusflow.io.readers import (ENCODINGS, FORMATS, READ_COUNTERS, READ_REASONS,
                                   _iter_lines, detect_encoding, detect_format, read_file)
from tests.fault_corpus import build_fault_corpus

SHARED = Path(os.environ.get("CORPUSFLOW_SHARED_CORPUS", "/work/shared/corpus"))


# ---------------------------------------------------------------- helpers


def read(path, **kw) -> tuple[list, dict]:
    c = CounterDict()
    items = list(read_file(str(path), inc=c, **kw))
    return items, c.as_dict()


class Opens:
    """An opener (``corpusflow.io.opener.Opener``) whose ``open`` is ``fn(path)``: all reading needs."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def open(self, path: str, mode: str = "rb"):
        assert mode == "rb"
        return self.fn(path)


def rej(reason, line, file, excerpt="", id=None, detail=None) -> Reject:
    return Reject(stage="read", reason=reason, kind="rejected", id=id, file=str(file),
                  line=line, excerpt=excerpt, detail=detail)


def counts(records, files=1, gb18030=0, **rejects) -> dict:
    out = {"read:files": files}
    if records:
        out["read:records"] = records
    if gb18030:
        out["read:decoded:gb18030"] = gb18030
    out.update({f"read:rejected:{r}": n for r, n in rejects.items() if n})
    return dict(sorted(out.items()))


def write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return p


def jl(*objs) -> str:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)


@pytest.fixture(params=["orjson", "stdlib"])
def json_backend(request, monkeypatch):
    """Run a test with orjson and with the stdlib fallback: results must agree."""
    if request.param == "stdlib":
        monkeypatch.setattr(formats, "orjson", None)
    elif formats.orjson is None:  # pragma: no cover
        pytest.skip("orjson not installed")
    return request.param


# ---------------------------------------------------------------- API surface


def test_api_constants_and_counter_vocabulary():
    assert FORMATS == ("wiki_json", "wiki_doc", "baike_json", "news_json", "bert_text", "text_lines")
    assert ENCODINGS == ("utf-8", "gb18030", "auto")
    assert READ_REASONS == ("malformed_json", "missing_text", "empty_text", "invalid_utf8",
                            "undecodable", "record_too_large", "malformed_doc",
                            "truncated_file", "unreadable_file", "not_regular_file", "not_gzip",
                            "not_bzip2", "not_zstd")
    assert set(READ_COUNTERS) == {"read:files", "read:records", "read:decoded:gb18030",
                                  *(f"read:rejected:{r}" for r in READ_REASONS)}
    assert set(READ_COUNTERS) <= vocabulary()


def test_bad_arguments_raise_immediately(tmp_path):
    p = write(tmp_path, "a.txt", "x\n")
    with pytest.raises(ValueError):
        read_file(str(p), fmt="xml")
    with pytest.raises(ValueError):
        read_file(str(p), encoding="latin-1")
    with pytest.raises(ValueError):
        read_file(str(p), max_record_bytes=0)


# ---------------------------------------------------------------- formats


def test_wiki_json(tmp_path, json_backend):
    lines = [
        '{"id": "13", "url": "https://zh.wikipedia.org/wiki?curid=13", "title": "数学", '
        '"text": "数学\\n\\n数学是研究数量的学科。\\n"}',
        '{"id": 14, "title": "哲学", "paragraphs": ["第一段。", "第二段。"]}',
        '{"title": "无编号", "text": "没有编号的文章。"}',
        '{"id": "", "title": "", "text": "空编号。"}',
        "",
        '{"id": "16", "title": "缺文本"}',
        '{"id": "17", "text": 42}',
        '{"id": "18", "title": "标题", "text": "标题\\n  \\n"}',
        "[1, 2]",
        '{"id": "19", "text": "未闭合',
        '{"id": "20", "text": NaN}',
        '{"id": "21", "text": "\\ud800"}',
        '{"id": "22", "paragraphs": "不是列表"}',
    ]
    p = write(tmp_path, "w.jsonl", "\n".join(lines) + "\n")
    f = str(p)
    items, c = read(p, fmt="wiki_json")
    assert items == [
        Document("wiki:13", "wiki", "数学", "数学是研究数量的学科。",
                 {"file": f, "line": 1, "url": "https://zh.wikipedia.org/wiki?curid=13"}),
        Document("wiki:14", "wiki", "哲学", "第一段。\n第二段。", {"file": f, "line": 2}),
        Document(content_id("wiki", "无编号", "没有编号的文章。"), "wiki", "无编号",
                 "没有编号的文章。", {"file": f, "line": 3}),
        Document(content_id("wiki", "", "空编号。"), "wiki", "", "空编号。", {"file": f, "line": 4}),
        rej("missing_text", 6, f, lines[5], id="wiki:16"),
        rej("missing_text", 7, f, lines[6], id="wiki:17"),
        rej("empty_text", 8, f, lines[7], id="wiki:18"),
        rej("malformed_json", 9, f, lines[8], detail="not a JSON object"),
        rej("malformed_json", 10, f, lines[9]),
        rej("malformed_json", 11, f, lines[10]),
        rej("malformed_json", 12, f, lines[11]),
        rej("missing_text", 13, f, lines[12], id="wiki:22"),
    ]
    assert c == counts(12, missing_text=3, empty_text=1, malformed_json=4)
    # auto picks the same format and gives the same records
    assert read(p)[0] == items


def test_baike_json(tmp_path, json_backend):
    lines = [
        '{"qid": "q1", "category": "教育/科学", "title": "天为什么是蓝的？", '
        '"desc": "一直想知道。", "answer": "因为瑞利散射。"}',
        '{"qid": 2, "category": "", "title": "问题二", "desc": "", "answer": "答案二。"}',
        '{"qid": "q3", "title": "无答案"}',
        '{"qid": "q4", "title": "空答案", "answer": " "}',
        '{"title": "没有编号", "answer": "有答案。"}',
    ]
    p = write(tmp_path, "b.jsonl", "\n".join(lines))  # no final newline
    f = str(p)
    items, c = read(p)
    assert items == [
        Document("baike:q1", "baike", "天为什么是蓝的？", "天为什么是蓝的？\n一直想知道。\n因为瑞利散射。",
                 {"file": f, "line": 1, "category": "教育/科学"}),
        Document("baike:2", "baike", "问题二", "问题二\n答案二。", {"file": f, "line": 2}),
        rej("missing_text", 3, f, lines[2], id="baike:q3"),
        rej("empty_text", 4, f, lines[3], id="baike:q4"),
        Document(content_id("baike", "没有编号", "没有编号\n有答案。"), "baike", "没有编号",
                 "没有编号\n有答案。", {"file": f, "line": 5}),
    ]
    assert c == counts(5, missing_text=1, empty_text=1)


def test_news_json(tmp_path, json_backend):
    lines = [
        jl({"news_id": "n1", "keywords": "经济,股市", "desc": "摘要", "title": "股市上涨",
            "source": "新华社", "time": "2016-05-01 10:00", "content": "今天股市上涨。"}),
        jl({"news_id": "n2", "keywords": "", "title": "", "source": "", "content": "只有正文。"}),
        jl({"news_id": "n3", "title": "没有正文"}),
        jl({"news_id": "n4", "title": "空正文", "content": ""}),
    ]
    # CRLF line endings are read like LF ones.
    p = write(tmp_path, "n.jsonl", "".join(ln.replace("\n", "\r\n") for ln in lines))
    f = str(p)
    items, c = read(p)
    assert items == [
        Document("news:n1", "news", "股市上涨", "今天股市上涨。",
                 {"file": f, "line": 1, "keywords": "经济,股市", "source": "新华社",
                  "time": "2016-05-01 10:00"}),
        Document("news:n2", "news", "", "只有正文。", {"file": f, "line": 2}),
        rej("missing_text", 3, f, lines[2].rstrip("\n"), id="news:n3"),
        rej("empty_text", 4, f, lines[3].rstrip("\n"), id="news:n4"),
    ]
    assert c == counts(4, missing_text=1, empty_text=1)


WIKI_DOC = [
    '<doc id="13" url="https://zh.wikipedia.org/wiki?curid=13" title="数学">',  # 1
    "数学",
    "",
    "数学是研究数量的学科。",
    "",
    "</doc>",
    '<doc id="14" url="u14" title="无重复标题">',  # 7
    "正文第一行。",
    "正文第二行。",
    "</doc>",
    "",
    '<doc id="15" url="u15" title=坏标题>',  # 12: malformed header
    "内容。",
    "</doc>",
    '<doc id="16" url="u16" title="未闭合">',  # 15: cut short by the next <doc
    "这一篇没有结束标记。",
    '<doc id="17" url="u17" title="引号"内"标题">',  # 17: quotes inside the title
    '引号"内"标题',
    "有引号的标题。",
    "</doc>",
    "游离的文字。",  # 21: text outside any block
    "第二行游离。",
    "",
    '<doc id="" url="u18" title="空编号">',  # 24
    "空编号的正文。",
    "</doc>",
    '<doc id="19" url="u19" title="仅标题">',  # 27: only the repeated title
    "仅标题",
    "</doc>",
    '<doc id="20" url="u20" title="到文件尾">',  # 30: never closed
    "没有结束。",
]


def test_wiki_doc(tmp_path):
    p = write(tmp_path, "wiki.doc.txt", "\n".join(WIKI_DOC) + "\n")
    f = str(p)
    items, c = read(p)
    assert items == [
        Document("wiki:13", "wiki", "数学", "数学是研究数量的学科。",
                 {"file": f, "line": 1, "url": "https://zh.wikipedia.org/wiki?curid=13"}),
        Document("wiki:14", "wiki", "无重复标题", "正文第一行。\n正文第二行。",
                 {"file": f, "line": 7, "url": "u14"}),
        rej("malformed_doc", 12, f, "\n".join(WIKI_DOC[11:13])),
        rej("malformed_doc", 15, f, "\n".join(WIKI_DOC[14:16]), id="wiki:16"),
        Document("wiki:17", "wiki", '引号"内"标题', "有引号的标题。",
                 {"file": f, "line": 17, "url": "u17"}),
        rej("malformed_doc", 21, f, "\n".join(WIKI_DOC[20:22])),
        Document(content_id("wiki", "空编号", "空编号的正文。"), "wiki", "空编号", "空编号的正文。",
                 {"file": f, "line": 24, "url": "u18"}),
        rej("empty_text", 27, f, "\n".join(WIKI_DOC[26:28]), id="wiki:19"),
        rej("malformed_doc", 30, f, "\n".join(WIKI_DOC[29:31]), id="wiki:20"),
    ]
    assert c == counts(9, malformed_doc=4, empty_text=1)


def test_wiki_doc_record_too_large_and_invalid_utf8(tmp_path):
    body = "很长的一行。" * 10  # 180 bytes
    data = ('<doc id="1" url="u" title="大">\n' + body + "\n" + body + "\n</doc>\n"
            '<doc id="2" url="u" title="小">\n短。\n</doc>\n').encode()
    data += '<doc id="3" url="u" title="坏">\n'.encode() + b"\xff\xfe\n</doc>\n"
    p = write(tmp_path, "big.doc.txt", data)
    f = str(p)
    items, c = read(p, encoding="utf-8", max_record_bytes=300)
    assert items == [
        rej("record_too_large", 1, f, '<doc id="1" url="u" title="大">\n' + body + "\n" + body,
            id="wiki:1"),
        Document("wiki:2", "wiki", "小", "短。", {"file": f, "line": 5, "url": "u"}),
        rej("invalid_utf8", 8, f, '<doc id="3" url="u" title="坏">\n\ufffd\ufffd', id="wiki:3"),
    ]
    assert c == counts(3, record_too_large=1, invalid_utf8=1)


def test_bert_text(tmp_path):
    data = "第一句。\n第二句。\n\n\n第三句。\r\n第四句。\r\n\u3000\u3000\n第五句。\n  \n"
    p = write(tmp_path, "bert.txt", data)
    f = str(p)
    items, c = read(p)
    assert items == [
        Document(content_id("text", "", "第一句。\n第二句。"), "text", "", "第一句。\n第二句。",
                 {"file": f, "line": 1}),
        Document(content_id("text", "", "第三句。\n第四句。"), "text", "", "第三句。\n第四句。",
                 {"file": f, "line": 5}),
        Document(content_id("text", "", "第五句。"), "text", "", "第五句。", {"file": f, "line": 8}),
    ]
    assert c == counts(3)
    assert read(p, fmt="bert_text")[0] == items


def test_bert_text_too_large_and_invalid(tmp_path):
    # Record 1 grows past the limit line by line; record 3 holds one over-long
    # line; record 4 has a line of bad UTF-8.
    data = ("一二三\n四五六\n\n七\n\n" + "长" * 10 + "\n八\n\n").encode() + b"ok\n\xff\n"
    p = write(tmp_path, "bert.txt", data)
    f = str(p)
    items, c = read(p, fmt="bert_text", encoding="utf-8", max_record_bytes=12)
    assert items == [
        rej("record_too_large", 1, f, "一二三\n四五六"),
        Document(content_id("text", "", "七"), "text", "", "七", {"file": f, "line": 4}),
        rej("record_too_large", 6, f, "长" * 10 + "\n八"),
        rej("invalid_utf8", 9, f, "ok\n\ufffd"),
    ]
    assert c == counts(4, record_too_large=2, invalid_utf8=1)


def test_text_lines(tmp_path):
    data = "第一行文字。\n\n   \n\u3000\u3000\n第二行文字。\r\n最后一行没有换行"
    p = write(tmp_path, "t.txt", data)
    f = str(p)
    items, c = read(p, fmt="text_lines")
    assert items == [Document(content_id("text", "", t), "text", "", t, {"file": f, "line": n})
                     for n, t in ((1, "第一行文字。"), (5, "第二行文字。"), (6, "最后一行没有换行"))]
    assert c == counts(3)


def test_record_too_large_lines(tmp_path, json_backend):
    long = "长" * 10  # 30 bytes
    p = write(tmp_path, "t.txt", f"短。\n{long}\n短二。")
    f = str(p)
    items, c = read(p, fmt="text_lines", max_record_bytes=12)
    assert items == [
        Document(content_id("text", "", "短。"), "text", "", "短。", {"file": f, "line": 1}),
        rej("record_too_large", 2, f, long),
        Document(content_id("text", "", "短二。"), "text", "", "短二。", {"file": f, "line": 3}),
    ]
    assert c == counts(3, record_too_large=1)
    line = jl({"news_id": "n", "content": long})
    p = write(tmp_path, "n.jsonl", line + jl({"news_id": "m", "content": "短"}))
    items, c = read(p, fmt="news_json", max_record_bytes=40)
    assert items[0] == rej("record_too_large", 1, p, line.rstrip("\n"))
    assert items[1].id == "news:m"
    assert c == counts(2, record_too_large=1)


def test_iter_lines_splits_and_skips_without_holding():
    chunks = [b"ab", b"c\nde", b"f\r\n", b"ghij", b"klmn", b"op\n", b"x\r"]
    assert list(_iter_lines(chunks, 5)) == [
        (1, b"abc", 0), (2, b"def", 0), (3, b"ghijklmnop", 1), (4, b"x", 0)]
    # an over-long last line without a newline
    assert list(_iter_lines([b"ab\n", b"cdefgh", b"ij"], 5)) == [(1, b"ab", 0), (2, b"cdefghij", 1)]
    assert list(_iter_lines([b"\n\n"], 5)) == [(1, b"", 0), (2, b"", 0)]


def test_invalid_utf8_records(tmp_path, json_backend):
    data = (b'{"text": "\xe5\xa5\xbd\xe6\x96\x87\xe7\xab\xa0"}\n'
            b'{"text": "\xff\xfe"}\n')
    p = write(tmp_path, "w.jsonl", data)
    f = str(p)
    items, c = read(p, fmt="wiki_json", encoding="utf-8")
    assert items == [
        Document(content_id("wiki", "", "好文章"), "wiki", "", "好文章", {"file": f, "line": 1}),
        rej("invalid_utf8", 2, f, '{"text": "\ufffd\ufffd"}'),
    ]
    assert c == counts(2, invalid_utf8=1)
    p = write(tmp_path, "t.txt", b"abc\xffdef\n\xe5\xa5\xbd\n")
    items, c = read(p, encoding="utf-8")
    assert items == [rej("invalid_utf8", 1, p, "abc\ufffddef"),
                     Document(content_id("text", "", "好"), "text", "", "好", {"file": str(p), "line": 2})]
    assert c == counts(2, invalid_utf8=1)


def test_ids_do_not_depend_on_the_path(tmp_path):
    data = "同一篇文章的内容。\n" + jl({"title": "标题", "text": "正文。"})
    (tmp_path / "sub").mkdir()
    for fmt in ("text_lines", "wiki_json"):
        a = write(tmp_path, "a.txt", data)
        b = write(tmp_path / "sub", "b.txt.gz", gzip.compress(data.encode()))
        ids_a = [i.id for i in read(a, fmt=fmt)[0]]
        assert ids_a == [i.id for i in read(b, fmt=fmt)[0]] and any(ids_a)


# ---------------------------------------------------------------- encodings


GBK_TEXT = "西三旗硅谷先锋小区半地下室出租，便宜可合租硅谷\n工信处女干事每月经过下属科室都要亲口交代\n"


def test_gbk_auto_detected_and_explicit(tmp_path):
    p = write(tmp_path, "gbk.txt", GBK_TEXT.encode("gbk"))
    f = str(p)
    expected = [Document(content_id("text", "", t), "text", "", t, {"file": f, "line": n})
                for n, t in enumerate(GBK_TEXT.splitlines(), 1)]
    items, c = read(p)
    assert items == expected
    assert c == counts(2, gb18030=1)
    assert read(p, encoding="gb18030") == (expected, c)
    # Forcing UTF-8 on GBK bytes rejects each line.
    items, c = read(p, encoding="utf-8")
    assert [r.reason for r in items] == ["invalid_utf8", "invalid_utf8"]
    assert c == counts(2, invalid_utf8=2)


def test_gb18030_json_four_byte_chars_and_bad_record(tmp_path, json_backend):
    text = "𠀀字与欧元符号€的新闻正文。"
    data = jl({"news_id": "g1", "title": "四字节", "content": text}).encode("gb18030")
    data += b'{"news_id": "g2", "content": "\x81\x20"}\n'
    p = write(tmp_path, "g.jsonl", data)
    f = str(p)
    items, c = read(p, encoding="gb18030")
    assert items == [
        Document("news:g1", "news", "四字节", text, {"file": f, "line": 1}),
        rej("undecodable", 2, f, '{"news_id": "g2", "content": "\ufffd "}'),
    ]
    assert c == counts(2, gb18030=1, undecodable=1)


def test_undecodable_file_rejects_every_record(tmp_path):
    lines = ["Café crème, très bien.", "Voilà l'été à Orléans."]
    p = write(tmp_path, "latin1.txt", "\n".join(lines).encode("latin-1") + b"\n\n")
    items, c = read(p)
    assert items == [rej("undecodable", 1, p, lines[0].replace("é", "\ufffd").replace("è", "\ufffd")),
                     rej("undecodable", 2, p, lines[1].replace("é", "\ufffd").replace("à", "\ufffd"))]
    assert c == counts(2, undecodable=2)


def test_detect_encoding():
    zh = "数学是利用符号语言研究数量、结构、变化以及空间等概念的一门学科。\n" * 50
    assert detect_encoding(zh.encode()) == "utf-8"
    assert detect_encoding(b"plain ascii\n") == "utf-8"
    assert detect_encoding(zh.encode("gbk")) == "gb18030"
    assert detect_encoding(zh.encode("gb18030")) == "gb18030"
    # A few bad lines do not turn a UTF-8 file into GB18030 garbage.
    assert detect_encoding(zh.encode() + b"\xff\xfe bad line\n" + zh.encode()) == "utf-8"
    # A character cut at the sample's edge is the edge, not an error...
    cut = "中文".encode() + "中".encode()[:1]
    assert detect_encoding(cut, at_eof=False) == "utf-8"
    # ...unless the sample is the whole file.
    assert detect_encoding(cut, at_eof=True) != "utf-8"
    # GB18030 that is mostly not Chinese is not trusted.
    assert detect_encoding("Café crème à l'été, très bien.\n".encode("latin-1")) == "undecodable"
    assert detect_encoding(b"\xef\xbb\xbf" + "中文".encode()) == "utf-8"


def test_utf8_bom_is_stripped(tmp_path, json_backend):
    p = write(tmp_path, "bom.jsonl", b"\xef\xbb\xbf" + jl({"qid": "b1", "answer": "答案。"}).encode())
    items, c = read(p)
    assert [d.id for d in items] == ["baike:b1"]
    p = write(tmp_path, "bom.txt", b"\xef\xbb\xbf" + "第一行。\n".encode())
    assert [d.text for d in read(p, encoding="utf-8")[0]] == ["第一行。"]


def test_auto_utf8_file_with_a_bad_line_near_the_start(tmp_path):
    good = ["第%d行：数学是利用符号语言研究数量、结构、变化以及空间等概念的一门学科。" % i for i in range(30)]
    data = ("\n".join(good[:3]) + "\n").encode() + b"\xff\xfe\xfd\n" + ("\n".join(good[3:]) + "\n").encode()
    p = write(tmp_path, "t.txt", data)
    items, c = read(p)
    assert [getattr(i, "reason", None) for i in items].count("invalid_utf8") == 1
    assert [i.text for i in items if isinstance(i, Document)] == good
    assert c == counts(31, invalid_utf8=1)


# ---------------------------------------------------------------- format detection


@pytest.mark.parametrize("sample, fmt", [
    ('<doc id="1" url="u" title="t">\n正文\n</doc>\n', "wiki_doc"),
    ('\n\n<doc id="1" url="u" title="t">\n', "wiki_doc"),
    ('{"qid": 1, "answer": "a"}\n', "baike_json"),
    ('{"news_id": 1, "content": "a"}\n', "news_json"),
    ('{"id": 1, "text": "a"}\n', "wiki_json"),
    ('{"id": 1, "paragraphs": ["a"]}\n', "wiki_json"),
    ('{"foo": 1}\n{"bar": 2}\n', "text_lines"),
    ('{"news_id": "x", "content": "未闭合\n{"news_id": "y", "content": "好"}\n', "news_json"),
    ("第一句。\n第二句。\n\n第三句。\n", "bert_text"),
    ("第一句。\n \u3000\n第三句。\n", "bert_text"),
    ("第一行。\n第二行。\n", "text_lines"),
    ("第一行。\n第二行。\n\n\n", "text_lines"),
    ("", "text_lines"),
])
def test_detect_format(sample, fmt, json_backend):
    assert detect_format(sample.encode()) == fmt


def test_detect_format_cut_first_line_and_gb18030():
    cut = ('{"news_id": "x", "title": "t", "content": "' + "很长" * 100).encode()
    assert detect_format(cut, at_eof=False) == "news_json"
    assert detect_format('{"qid": "q", "answer": "中文"}\n'.encode("gb18030"), encoding="gb18030") == "baike_json"
    # the cut last line of a sample still counts as text after a blank line
    assert detect_format("一\n\n二".encode(), at_eof=False) == "bert_text"


def test_auto_reads_a_first_json_line_longer_than_the_sample(tmp_path):
    text = "维基百科的长条目。" * 12_000  # ~324 KB, far past the 64 KB sample
    p = write(tmp_path, "long.jsonl", jl({"id": "1", "title": "长", "text": text}, {"id": "2", "text": "短。"}))
    items, c = read(p)
    assert [(d.id, len(d.text)) for d in items] == [("wiki:1", len(text)), ("wiki:2", 2)]
    assert c == counts(2)


# ---------------------------------------------------------------- compression


NEWS = [{"news_id": f"n{i}", "title": f"标题{i}", "content": f"第{i}条新闻的正文。" * 5} for i in range(20)]


def _compressors():
    def zst_two_frames(data):
        half = len(data) // 2
        c = zstandard.ZstdCompressor(write_checksum=True)
        return c.compress(data[:half]) + c.compress(data[half:])
    return {"x.jsonl.gz": gzip.compress, "x.jsonl.bz2": bz2.compress,
            "x.jsonl.zst": zstandard.ZstdCompressor().compress, "x.jsonl.zstd": zst_two_frames}


@pytest.mark.parametrize("name", sorted(_compressors()))
def test_compressed_files_read_like_plain(tmp_path, name):
    data = jl(*NEWS).encode()
    plain, _ = read(write(tmp_path, "x.jsonl", data))
    p = write(tmp_path, name, _compressors()[name](data))
    items, c = read(p)
    for d in plain:
        d.meta["file"] = str(p)
    assert items == plain and len(items) == 20
    assert c == counts(20)


@pytest.mark.parametrize("name, data", [
    ("e.txt", b""), ("e.jsonl.gz", gzip.compress(b"")), ("e.jsonl.zst", b""),
    ("e.jsonl.bz2", bz2.compress(b"")), ("e.txt.zst", zstandard.ZstdCompressor().compress(b"")),
])
def test_empty_files(tmp_path, name, data):
    assert read(write(tmp_path, name, data)) == ([], counts(0))


def _gz_cut(data: bytes) -> bytes:
    """A gzip stream of ``data`` that ends early (no final block, no trailer)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    return comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)


def _zst_cut(data: bytes) -> bytes:
    comp = zstandard.ZstdCompressor().compressobj()
    return comp.compress(data) + comp.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


@pytest.mark.parametrize("name, cut, detail", [
    ("t.jsonl.gz", _gz_cut, "EOFError: Compressed file ended before the end-of-stream marker was reached"),
    ("t.jsonl.zst", _zst_cut, "zstd stream ended before the end of its frame"),
])
def test_truncated_archive_mid_record(tmp_path, name, cut, detail):
    tail = '{"news_id": "n2", "content": "被截断的'
    data = jl(*NEWS[:2]) + tail
    p = write(tmp_path, name, cut(data.encode()))
    items, c = read(p)
    assert [d.id for d in items[:2]] == ["news:n0", "news:n1"]
    assert items[2:] == [rej("truncated_file", 3, p, tail, detail=detail)]
    assert c == counts(3, truncated_file=1)


def test_truncated_archive_at_a_line_boundary(tmp_path):
    p = write(tmp_path, "t.jsonl.gz", _gz_cut(jl(*NEWS[:2]).encode()))
    items, c = read(p)
    assert len(items) == 3 and items[2].reason == "truncated_file"
    assert (items[2].line, items[2].excerpt) == (3, "")
    assert c == counts(3, truncated_file=1)


@pytest.mark.parametrize("ext, compress", [(".gz", gzip.compress), (".bz2", bz2.compress),
                                           (".zst", zstandard.ZstdCompressor().compress)])
def test_truncated_anywhere_keeps_a_prefix(tmp_path, ext, compress):
    data = jl(*NEWS).encode()
    whole = compress(data)
    all_ids = [d["news_id"] for d in NEWS]
    for i, cut_at in enumerate(range(len(whole) // 7, len(whole) - 1, len(whole) // 7)):
        p = write(tmp_path, f"t{i}.jsonl{ext}", whole[:cut_at])
        items, c = read(p)
        docs = [d for d in items if isinstance(d, Document)]
        rejects = [r for r in items if isinstance(r, Reject)]
        assert [d.id for d in docs] == ["news:" + x for x in all_ids[:len(docs)]]
        assert [r.reason for r in rejects] == ["truncated_file"]
        assert rejects[0].line == len(docs) + 1
        assert c == counts(len(docs) + 1, truncated_file=1)


def test_corrupt_archives(tmp_path):
    data = jl(*NEWS[:3]).encode()
    bad_crc = bytearray(gzip.compress(data))
    bad_crc[-8] ^= 0xFF  # the CRC32 in the trailer
    items, c = read(write(tmp_path, "crc.jsonl.gz", bytes(bad_crc)))
    # The CRC is only known at the end: the records were read, then the damage.
    assert [type(i).__name__ for i in items] == ["Document"] * 3 + ["Reject"]
    assert items[3].reason == "truncated_file" and "CRC" in items[3].detail
    assert c == counts(4, truncated_file=1)
    p = write(tmp_path, "notgz.jsonl.gz", data)
    items, c = read(p)
    # Not an archive at all: its own reason, not a "truncated" one (issue 14).
    assert [(r.reason, r.line) for r in items] == [("not_gzip", None)]
    assert c == counts(1, not_gzip=1)
    p = write(tmp_path, "junk.jsonl.zst", zstandard.ZstdCompressor().compress(data) + b"junk")
    items, c = read(p)
    assert [getattr(i, "reason", "doc") for i in items] == ["doc"] * 3 + ["truncated_file"]
    assert c == counts(4, truncated_file=1)


def test_truncated_multiline_record_points_at_its_start(tmp_path):
    doc = '<doc id="1" url="u" title="甲">\n甲\n正文。\n</doc>\n<doc id="2" url="u" title="乙">\n乙\n半截'
    items, c = read(write(tmp_path, "w.doc.txt.gz", _gz_cut(doc.encode())))
    assert items[0].id == "wiki:1"
    assert (items[1].reason, items[1].line, items[1].id) == ("truncated_file", 5, None)
    assert items[1].excerpt == '<doc id="2" url="u" title="乙">\n乙\n半截'
    assert c == counts(2, truncated_file=1)
    bert = "一句。\n二句。\n\n三句。\n四"
    items, c = read(write(tmp_path, "b.txt.zst", _zst_cut(bert.encode())))
    assert items[0].text == "一句。\n二句。"
    assert (items[1].reason, items[1].line, items[1].excerpt) == ("truncated_file", 4, "三句。\n四")
    assert c == counts(2, truncated_file=1)


def test_unreadable_files(tmp_path):
    missing = tmp_path / "nope.jsonl"
    items, c = read(missing)
    assert len(items) == 1 and items[0].detail.startswith("FileNotFoundError")
    assert items[0] == rej("unreadable_file", None, missing, detail=items[0].detail)
    assert c == counts(1, unreadable_file=1)
    assert [(r.reason, r.detail) for r in read(tmp_path)[0]] == [
        ("not_regular_file", "a directory, not read")]

    def opener(path):
        raise PermissionError("denied")
    items, c = read("gs://bucket/x.jsonl", opener=Opens(opener))
    assert items == [rej("unreadable_file", None, "gs://bucket/x.jsonl", detail="PermissionError: denied")]


def test_custom_opener_and_read_failure_midway(tmp_path):
    data = jl(*NEWS[:3]).encode()
    seen = []

    def opener(path):
        seen.append(path)
        return io.BytesIO(gzip.compress(data))
    items, c = read("mem://bucket/x.jsonl.gz", opener=Opens(opener))
    assert seen == ["mem://bucket/x.jsonl.gz"] and [d.meta["file"] for d in items] == [seen[0]] * 3

    class Flaky(io.RawIOBase):
        """Serves its bytes, then fails the way a dropped connection does."""

        def __init__(self, wrap):
            self.buf = io.BytesIO(wrap(data))

        def readable(self):
            return True

        def readinto(self, b):
            n = self.buf.readinto(b)
            if not n:
                raise ConnectionError("connection reset")
            return n

    # An I/O error is not damaged data: it propagates (the runner retries the
    # file) instead of becoming a reject.
    for name, wrap in (("mem://x.jsonl", lambda b: b), ("mem://x.jsonl.gz", gzip.compress)):
        got = []
        with pytest.raises(ConnectionError):
            for item in read_file(name, opener=Opens(lambda p: Flaky(wrap))):
                got.append(item)
        # (here the failure comes while sniffing the first 64 KB: nothing yet)
        assert got == []


def _peak_while_reading(path, **kw) -> tuple[int, list]:
    tracemalloc.start()
    try:
        out = [(type(i).__name__, getattr(i, "reason", None), getattr(i, "line", None))
               for i in read_file(str(path), **kw)]
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("ext", ["", ".zst", ".gz"])
def test_giant_line_is_skipped_in_bounded_memory(tmp_path, ext):
    piece = ("一行很长的文字，" * 4000).encode()  # 96 KB
    size = 40 * 2**20
    p = tmp_path / f"giant.txt{ext}"
    with open(p, "wb") as raw:
        out = (zstandard.ZstdCompressor().stream_writer(raw) if ext == ".zst"
               else gzip.GzipFile(fileobj=raw, mode="wb") if ext == ".gz" else raw)
        out.write("第一行。\n".encode())
        for _ in range(size // len(piece)):
            out.write(piece)
        out.write("\n最后一行。\n".encode())
        out.close() if out is not raw else None
    peak, items = _peak_while_reading(p, max_record_bytes=2**20)
    assert items == [("Document", None, None), ("Reject", "record_too_large", 2),
                     ("Document", None, None)]
    assert peak < 12 * 2**20, peak  # the 40 MB line was never held


# ---------------------------------------------------------------- fault corpus


@pytest.fixture(scope="module")
def fault_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("fault")
    return root, build_fault_corpus(root)


def test_fault_corpus_counts_are_exact(fault_corpus):
    root, expected = fault_corpus
    c = CounterDict()
    docs, rejects = [], {}
    per_file = {}
    for f in expected["files"]:
        n_docs = 0
        file_rejects: dict[str, int] = {}
        for item in read_file(f, inc=c):
            if isinstance(item, Document):
                docs.append(item)
                n_docs += 1
            else:
                file_rejects[item.reason] = file_rejects.get(item.reason, 0) + 1
        per_file[Path(f).name] = (n_docs, file_rejects)
        for r, n in file_rejects.items():
            rejects[r] = rejects.get(r, 0) + n
    assert per_file == {name: (info["documents"], info["rejects"])
                        for name, info in expected["per_file"].items()}
    assert len(docs) == expected["documents"]
    assert rejects == expected["rejects"]
    assert c.as_dict() == expected["counters"]
    assert c["read:records"] == expected["records"] == len(docs) + sum(rejects.values())
    assert expected["rejects"]["malformed_json"] == 100  # exactly 1% of the 10,000 news lines
    assert expected["rejects"]["truncated_file"] == 2
    # Good documents survive a ~20-character cleaning threshold and exact dedup.
    assert len({d.text for d in docs}) == len(docs)
    assert len({d.id for d in docs}) == len(docs)
    assert min(sum("\u4e00" <= ch <= "\u9fff" for ch in d.text) for d in docs) >= 60


def test_fault_corpus_is_deterministic(fault_corpus, tmp_path):
    root, expected = fault_corpus
    # Same seed, same bytes (the 50 MB file is compared by size only to stay fast).
    again = build_fault_corpus(tmp_path)
    for a, b in zip(expected["files"], again["files"]):
        if Path(a).stat().st_size > 2**24:
            assert Path(a).stat().st_size == Path(b).stat().st_size
        else:
            assert Path(a).read_bytes() == Path(b).read_bytes()
    assert {k: v for k, v in again.items() if k not in ("files", "per_file")} == \
        {k: v for k, v in expected.items() if k not in ("files", "per_file")}


# ---------------------------------------------------------------- real data


needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared corpus not present")


@needs_shared
def test_shared_corpus_reads_cleanly():
    results = {}
    for p in sorted(SHARED.rglob("*")):
        if not p.is_file():
            continue
        c = CounterDict()
        items = list(read_file(str(p), inc=c))
        docs = [i for i in items if isinstance(i, Document)]
        assert c["read:records"] == len(items), p
        assert all(d.text.strip() and d.meta["file"] == str(p) for d in docs), p
        results[str(p.relative_to(SHARED))] = (docs, [i for i in items if isinstance(i, Reject)], c)

    docs, rejects, _ = results["wiki/zhwiki_AA_wiki_00.jsonl"]
    assert (docs[0].id, docs[0].title, docs[0].meta["line"]) == ("wiki:13", "数学", 1)
    assert docs[0].text.startswith("数学是利用符号语言研究數量")
    assert len(docs) == 64 and not rejects
    # The same articles from WikiExtractor's <doc> output read identically.
    doc_docs, doc_rejects, _ = results["wiki/zhwiki_AA_wiki_00.doc.txt"]
    assert not doc_rejects
    assert [(d.id, d.title, d.text) for d in doc_docs] == [(d.id, d.title, d.text) for d in docs]

    docs, _, c = results["misc/jieba_test.txt"]
    assert c["read:decoded:gb18030"] == 1
    assert docs[0].text.startswith("西三旗硅谷先锋小区半地下室出租")
    docs, _, c = results["news/original/sogouca_news_tensite_xml.smarty.gb18030.dat"]
    assert c["read:decoded:gb18030"] == 1
    assert any("公安机关销毁" in d.text for d in docs)

    docs, _, _ = results["baike/dureader_demo_qa.baike2018qa.jsonl"]
    assert (docs[0].id, docs[0].title) == ("baike:dureader-devset-186572", "2017有什么好看的小说")
    docs, _, _ = results["baike/dureader_demo_devset_docs.jsonl"]
    assert docs[0].id == "wiki:dureader-devset-186572-0" and docs[0].source == "wiki"
    docs, _, _ = results["news/thucnews_cnews_val_first300.news2016zh.jsonl"]
    assert docs[0].id == "news:thucnews-cnews-val-0" and len(docs) == 300
    docs, _, _ = results["news/clue_pretrained_sample_zh.txt"]
    assert docs[0].source == "text" and "\n" in docs[1].text  # bert_text documents


def test_fifo_is_rejected_without_being_opened(tmp_path):
    # Opening a FIFO with no writer blocks forever: the reader must stat first.
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    items, c = read(fifo)
    assert [(r.reason, r.detail) for r in items] == [("not_regular_file", "a FIFO, not read")]
    assert c == counts(1, not_regular_file=1)


@pytest.mark.parametrize("name,reason", [("plain.jsonl.gz", "not_gzip"), ("plain.txt.bz2", "not_bzip2"),
                                         ("plain.jsonl.zst", "not_zstd")])
def test_wrong_compression_has_its_own_reason(tmp_path, name, reason):
    # A plain-text file named as an archive is not a truncated archive.
    f = tmp_path / name
    f.write_text('{"id": "1", "text": "这是一段足够长的中文文本内容。"}\n', encoding="utf-8")
    items, c = read(f)
    assert [r.reason for r in items] == [reason]
    assert items[0].detail == "named as " + {"not_gzip": "gzip", "not_bzip2": "bz2",
                                             "not_zstd": "zstd"}[reason] + " but starts with 7b226964"
    assert c == counts(1, **{reason: 1})


def test_real_archives_still_read_after_the_magic_check(tmp_path):
    import bz2
    import gzip as gz
    import zstandard
    line = '{"id": "1", "text": "这是一段足够长的中文文本内容。"}\n'.encode()
    for name, data in (("a.jsonl.gz", gz.compress(line)), ("a.jsonl.bz2", bz2.compress(line)),
                       ("a.jsonl.zst", zstandard.ZstdCompressor().compress(line)),
                       ("empty.jsonl.gz", b"")):
        f = tmp_path / name
        f.write_bytes(data)
        items, _ = read(f)
        if name.startswith("empty"):
            assert items == []
        else:
            assert [d.text for d in items] == ["这是一段足够长的中文文本内容。"], name
