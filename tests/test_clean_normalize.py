"""Tests for corpusflow.clean.normalize: one rule at a time, exact outputs and counters."""

from __future__ import annotations

import json
import pathlib
import pickle

import pytest

from corpusflow.clean import normalize as N
from corpusflow.counters import CounterDict

CORPUS = pathlib.Path("/work/shared/corpus")


@pytest.fixture(scope="module")
def t2s():
    return N.load_t2s()


def run(rule, text, *args):
    c = CounterDict()
    out = rule(text, *args, c)
    return out, c.as_dict()


# --- control characters -------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("\ufeff中文", "中文"),                       # BOM
    ("中\u200b文\u200c字\u200d符\u2060号\ufeff", "中文字符号"),
    ("a\tb", "a b"),
    ("a\r\nb\rc", "a\n\nb\nc"),
    ("a\x00b\x07c\x1bd\x7fe\x9ff", "abcdef"),
    ("soft\xadhyphen", "softhyphen"),
    ("\u202a右\u202c\u200e", "右"),
    ("行\u2028行\u2029段\x0c页\x85", "行\n行\n段\n页\n"),
])
def test_remove_control_chars(text, expected):
    assert run(N.remove_control_chars, text) == (expected, {"clean:normalized:control_chars": 1})


def test_remove_control_chars_untouched():
    text = "中文\n第二行 ASCII ok！"
    out, counts = run(N.remove_control_chars, text)
    assert out is text and counts == {}


def test_remove_replacement_chars():
    assert run(N.remove_replacement_chars, "中\ufffd文\ufffd\ufffd") == (
        "中文", {"clean:normalized:replacement_char": 1})
    assert run(N.remove_replacement_chars, "中文") == ("中文", {})


# --- HTML -----------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("中国&nbsp;北京", "中国 北京"),
    ("AT&amp;T", "AT&T"),
    ("&#20013;&#x6587;", "中文"),
    ("&quot;引号&quot;&#39;", "\"引号\"'"),
    ("&amp;nbsp;双重转义", " 双重转义"),            # double-escaped crawl
    ("第一行<br>第二行<br/>第三行<BR />", "第一行\n第二行\n第三行\n"),
    ("<p>段落一</p><p>段落<b>二</b></p>", "\n段落一\n\n段落二\n"),
    ("<td>甲</td><td>乙</td>", " 甲  乙 "),
    ('<a href="http://x.cn/?a=1&amp;b=2">链接</a>文字', "链接文字"),
    ("前<script type=\"text/javascript\">var a = 1 < 2;</script>后", "前后"),
    ("前<!-- 注释 <b> -->后", "前后"),
    ("&lt;br&gt;转义的标签", "\n转义的标签"),
])
def test_html_changes(text, expected):
    assert run(N.unescape_html_and_strip_tags, text) == (expected, {"clean:normalized:html": 1})


@pytest.mark.parametrize("text", [
    "a < b and c > d",
    "若a<b且b>c",
    "集合<u, v>中的边",
    "（IPA： <WICK-ee> 或 <WEE-kee>）",
    "《红楼梦》和〈序〉",
    "1<2",
    "<<<>>>",
    "Tom & Jerry, &foo; &copy=2 &#; &nbsp",        # not well-formed or unknown entities
    "<bogus>不认识的标签</bogus>",
])
def test_html_leaves_text_alone(text):
    assert run(N.unescape_html_and_strip_tags, text) == (text, {})


# --- wiki markup ----------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("群、環、-{zh-cn:域;zh-tw:體}-等", "群、環、域等"),
    ("-{zh-tw:體;zh-cn:域}-", "域"),
    ("-{zh-cn: 增长; zh-tw: 成長}-", "增长"),                          # spaces around
    ("-{zh-hans:财富; zh-tw:財星; zh-hk:財富;}-", "财富"),            # trailing ";"
    ("-{zh-hans:社会媒体; zh-cn:社交媒体; zh-tw:社群媒體;}-", "社交媒体"),  # zh-cn beats zh-hans
    ("-{zh-tw:單車; zh-sg:脚车;}-", "脚车"),
    ("-{zh-tw:單車; zh:自行车}-", "自行车"),
    ("-{zh-tw:腳踏車;zh-hk:單車;}-", "腳踏車"),                       # first variant
    ("-{zh-hant:; zh-hans:;}-", ""),
    ("-{于}-爾班", "于爾班"),
    ("-{}-", ""),
    ("《-{FIFA14}-》", "《FIFA14》"),
    ("-{H|zh-hant:心裡學;zh-hans:心里学;}-心理学", "心理学"),           # hidden rule
    ("-{T|zh-cn:标题;zh-tw:標題}-正文", "正文"),
    ("-{A|zh-cn:蓝屏死机; zh-tw:藍白當機畫面; zh-hk:BSOD}-", "蓝屏死机"),
    ("罗宾·-{A|zh-hk:苏达宁;zh-hans:索德林;zh-tw:索德灵;}-", "罗宾·索德林"),
    ("-{R|zh-cn:原样}-", "zh-cn:原样"),
    ("-{zh-cn:比例 1:2;b; zh-tw:x}-", "比例 1:2;b"),                  # ";" and ":" in a variant
    ("-{a;b}-", "a;b"),
    ("-{a|b}-", "a|b"),                                           # lowercase: no flag
    ("甲-{zh-cn:一;zh-tw:壹}-乙-{zh-cn:二;zh-tw:貳}-丙", "甲一乙二丙"),
])
def test_wiki_markup(text, expected):
    assert run(N.resolve_wiki_markup, text) == (expected, {"clean:normalized:wiki_markup": 1})


@pytest.mark.parametrize("text", ["a-{b", "x}-y", "-{跨\n行}-", "普通文本 {x} -y-"])
def test_wiki_markup_leaves_text_alone(text):
    assert run(N.resolve_wiki_markup, text) == (text, {})


# --- width ------------------------------------------------------------------------

def test_fold_width_exact_set():
    assert run(N.fold_width, "２０１２年ＡＢＣｘｙｚ") == ("2012年ABCxyz", {"clean:normalized:width": 1})
    assert run(N.fold_width, "中国\u3000北京") == ("中国 北京", {"clean:normalized:width": 1})
    assert run(N.fold_width, "＃％＋－．／＠＆＊＝＜＞［］｛｝＂＇＄＾＿｀｜＼") == (
        "#%+-./@&*=<>[]{}\"'$^_`|\\", {"clean:normalized:width": 1})
    assert run(N.fold_width, "｡｢半角｣､") == ("。「半角」、", {"clean:normalized:width": 1})


def test_fold_width_keeps_chinese_punctuation():
    text = "你好，世界。真的！？：；「」『』（）《》、…—～【】“”"
    assert run(N.fold_width, text) == (text, {})


def test_fold_width_table_covers_ff01_ff5e():
    # Every char in U+FF01-FF5E is either kept or folded to its ASCII twin.
    for c in range(0xFF01, 0xFF5F):
        out = N.fold_width(chr(c), lambda *a: None)
        assert out == (chr(c) if chr(c) in N.KEEP_FULLWIDTH else chr(c - 0xFEE0))


# --- T->S -------------------------------------------------------------------------

def test_to_simplified(t2s):
    assert run(N.to_simplified, "數學是一門學科", t2s) == (
        "数学是一门学科", {"clean:normalized:t2s": 1})
    assert run(N.to_simplified, "数学是一门学科", t2s) == ("数学是一门学科", {})
    assert run(N.to_simplified, "", t2s) == ("", {})


# --- whitespace ---------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("  a   b  ", "a b"),
    ("第一段\n\n\n第二段", "第一段\n第二段"),
    (" 行一 \n \n\t行二\t\n", "行一\n行二"),
    ("a\xa0\u2003b", "a b"),
    ("结束。 下一句", "结束。下一句"),
    ("他说 “你好” 然后", "他说“你好”然后"),
    ("Python （一种语言）", "Python（一种语言）"),
    ("神情落寞 吴伯雄", "神情落寞 吴伯雄"),                      # kept between ideographs
    ("He said “hi” to me", "He said “hi” to me"),            # English curly quotes untouched
    ("wait… what", "wait… what"),
])
def test_normalize_whitespace(text, expected):
    out, counts = run(N.normalize_whitespace, text)
    assert out == expected
    assert counts == ({"clean:normalized:whitespace": 1} if text != expected else {})


# --- junk lines and punctuation runs ---------------------------------------------------

@pytest.mark.parametrize("text,expected,lines,runs", [
    ("正文\n-----\n下一段", "正文\n\n下一段", 1, 0),                  # separator line
    ("正文\n= = = = =\n……\n────\n＊\n下一段", "正文\n\n\n\n\n下一段", 4, 0),
    ("  \n正文", "  \n正文", 0, 0),                                   # spaces: not junk
    ("第一章……………………5", "第一章……5", 0, 1),                          # dotted leader
    ("他说——————对", "他说——对", 0, 1),                                # the dash pair
    ("好。。。。。。吗?????", "好。。。吗???", 0, 2),
    ("人民日报--------------加入", "人民日报---加入", 0, 1),
    ("____和____", "___和___", 0, 2),
    ("◆◆◆◆◆教你", "◆◆◆教你", 0, 1),
    ("好！！！……——。。。", "好！！！……——。。。", 0, 0),        # up to 3: ordinary text
    ("哈哈哈哈哈 00000 aaaa", "哈哈哈哈哈 00000 aaaa", 0, 0),       # letters, digits
    ("1.\n(图)\n--", "1.\n(图)\n", 1, 0),
])
def test_remove_junk(text, expected, lines, runs):
    out, counts = run(N.remove_junk, text)
    assert out == expected
    want = {}
    if lines:
        want["clean:edited:junk_lines"] = lines
    if runs:
        want["clean:edited:punct_runs"] = runs
    assert counts == want


def test_normalize_drops_junk_lines_and_folds_width_first():
    # ＿＿＿＿ and －－－－ are full-width: folded to ASCII first, then junk.
    c = CounterDict()
    assert N.normalize("标题\n＿＿＿＿\n正文－－－－－结束\n\n……\n", c) == "标题\n正文---结束"
    assert c.as_dict() == {"clean:edited:junk_lines": 2, "clean:edited:punct_runs": 1,
                           "clean:normalized:whitespace": 1, "clean:normalized:width": 1}


@pytest.mark.skipif(not (CORPUS / "news").is_dir(), reason="no corpus")
def test_real_junk_is_gone():
    """Every news/QA text of the shared corpus: after normalisation no line
    lacks a letter or digit and no punctuation run reaches 4."""
    import re
    c = CounterDict()
    n = 0
    for path in sorted(CORPUS.glob("*/*.jsonl")):
        for line in path.open(encoding="utf-8"):
            rec = json.loads(line)
            for field in ("content", "text", "answer", "desc"):
                if isinstance(rec.get(field), str) and rec[field]:
                    out = N.normalize(rec[field], c)
                    n += 1
                    assert not re.search(r"([^\w\s]|_)\1{3,}", out)
                    assert all(re.search(r"[^\W_]", x) for x in out.split("\n") if x), out
    assert n > 500 and c["clean:edited:punct_runs"] > 10


# --- composition ------------------------------------------------------------------------

def test_normalize_order_and_counters(t2s):
    text = ("\ufeff數學&nbsp;是 -{zh-cn:一门;zh-tw:一門}-學科<br>"
            "２０１２年\u200b&#12288;ＡＢ\r\n\r\n 第二段\ufffd。 ")
    c = CounterDict()
    assert N.normalize(text, c, t2s) == "数学 是 一门学科\n2012年 AB\n第二段。"
    assert c.as_dict() == {
        "clean:normalized:control_chars": 1,
        "clean:normalized:html": 1,
        "clean:normalized:replacement_char": 1,
        "clean:normalized:t2s": 1,
        "clean:normalized:whitespace": 1,
        "clean:normalized:width": 1,
        "clean:normalized:wiki_markup": 1,
    }


def test_entity_encoded_invisible_chars_are_removed():
    # html runs first, so what an entity decodes to is still cleaned.
    c = CounterDict()
    assert N.normalize("中&#8203;国&#xFF21;&#9;b", c) == "中国A b"
    assert c.as_dict() == {"clean:normalized:control_chars": 1, "clean:normalized:html": 1,
                           "clean:normalized:width": 1}


def test_normalize_without_converter_keeps_traditional():
    c = CounterDict()
    assert N.normalize("數學", c) == "數學"
    assert c.as_dict() == {}


def test_normalize_title(t2s):
    assert N.normalize_title(" 標題<br>第二行 ", t2s) == "标题 第二行"


def test_tables_pickle():
    # Module state is plain data: nothing stops a DoFn holding references to it.
    pickle.dumps((N._CONTROL_TABLE, N._WIDTH_TABLE, N._TAG_RE))


# --- real data ---------------------------------------------------------------------------

@pytest.mark.skipif(not (CORPUS / "wiki/zhwiki_AA_wiki_00.jsonl").exists(), reason="no corpus")
def test_real_wiki_markup_and_tags_are_gone(t2s):
    c = CounterDict()
    for line in (CORPUS / "wiki/zhwiki_AA_wiki_00.jsonl").open(encoding="utf-8"):
        out = N.normalize(json.loads(line)["text"], c, t2s)
        assert "-{" not in out and "}-" not in out
        assert "<br>" not in out and "<nowiki>" not in out
        assert "\n\n" not in out and out == out.strip()
    assert c["clean:normalized:wiki_markup"] > 10 and c["clean:normalized:t2s"] > 10


@pytest.mark.skipif(not (CORPUS / "news/sogouca_tensite_smarty.news2016zh.jsonl").exists(),
                    reason="no corpus")
def test_real_news_width_folded():
    c = CounterDict()
    for line in (CORPUS / "news/sogouca_tensite_smarty.news2016zh.jsonl").open(encoding="utf-8"):
        out = N.normalize(json.loads(line)["content"], c)
        assert not any("\uff10" <= ch <= "\uff5a" and ch not in N.KEEP_FULLWIDTH for ch in out)
        assert "\u3000" not in out
    assert c["clean:normalized:width"] > 50
