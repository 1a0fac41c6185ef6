"""Character- and markup-level normalisation rules, one function per rule.

Every rule is ``rule(text, inc) -> text`` (T->S also takes the converter) and
calls ``inc("clean:normalized:<rule>")`` once when it changed the text, so the
counters say how many documents each rule touched. ``normalize`` applies them
in the order below; the order matters:

1. ``unescape_html_and_strip_tags`` first: an entity can encode anything the
   later rules remove or fold (``&#8203;`` zero-width space, ``&#12288;``
   ideographic space, ``&#xFF21;`` full-width A). Entities are decoded before
   tags are stripped because an escaped tag (``&lt;br&gt;``) in crawled text is
   leaked markup, not content; the strict tag grammar and the tag-name
   allowlist keep "a < b", "<u, v>" and "<WICK-ee>" intact.
2. ``remove_control_chars`` and ``remove_replacement_chars``: after 1, which can
   produce both.
3. ``resolve_wiki_markup`` before T->S: it picks the zh-cn variant by its tag,
   and the fallback variant may be Traditional, which T->S then converts.
4. ``fold_width`` before whitespace (U+3000 becomes a space to collapse).
5. ``to_simplified`` (OpenCC) on text that is free of markup.
6. ``remove_junk`` after width folding (``－－－－``, ``＿＿＿＿`` and ``．．．．``
   are ASCII runs by then) and before whitespace, which drops the lines it
   empties. It is the one line-level edit: it counts what it removed
   (``clean:edited:junk_lines``, ``clean:edited:punct_runs``) instead of once
   per document.
7. ``normalize_whitespace`` last: every rule above can leave spaces or empty
   lines behind (``<br>`` -> newline, ``&nbsp;`` -> space, a removed ``-{H|..}-``).
"""

from __future__ import annotations

import html
import re
from typing import Any, Optional

from corpusflow.counters import Inc, register

COUNTERS = register([
    "clean:normalized:html",
    "clean:normalized:control_chars",
    "clean:normalized:replacement_char",
    "clean:normalized:wiki_markup",
    "clean:normalized:width",
    "clean:normalized:t2s",
    "clean:normalized:whitespace",
    # Line-level edits of remove_junk: how many lines / runs, not documents.
    "clean:edited:junk_lines",
    "clean:edited:punct_runs",
])

# --------------------------------------------------------------------------
# Control, format and invisible characters
# --------------------------------------------------------------------------

# C0 and C1 controls are deleted, except "\n" (kept) and the ones mapped below.
_CONTROL_TABLE: dict[int, Optional[str]] = {
    c: None for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if c != 0x0A}
_CONTROL_TABLE[0x09] = " "
# Other line breaks become "\n" so they still separate lines/sentences.
for _c in (0x0B, 0x0C, 0x0D, 0x85, 0x2028, 0x2029):
    _CONTROL_TABLE[_c] = "\n"
# Invisible characters: zero-width (U+200B-U+200D, U+2060, U+FEFF incl. a BOM
# anywhere), soft hyphen, bidi marks/embeddings/isolates, invisible math
# operators, interlinear annotation marks. They carry no text for pretraining
# and split words invisibly (a vocab would learn "中\u200b国").
for _c in ([0x00AD, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0x2061, 0x2062,
            0x2063, 0x2064, 0xFEFF, 0x061C, 0xFFF9, 0xFFFA, 0xFFFB]
           + list(range(0x202A, 0x202F)) + list(range(0x2066, 0x206A))):
    _CONTROL_TABLE[_c] = None

_CONTROL_RE = re.compile("[" + "".join(
    re.escape(chr(c)) for c in sorted(_CONTROL_TABLE)) + "]+")


def _translate_runs(pattern: re.Pattern, table: dict, text: str) -> tuple[str, int]:
    """``text`` with each run matched by ``pattern`` translated through ``table``.

    str.translate over a whole non-Latin-1 text does a dict lookup per
    character (5-7x slower on Chinese text); matching the rare runs in C and
    translating only them is not. Every mapped character differs from its
    image, so the number of runs > 0 means the text changed.
    """
    return pattern.subn(lambda m: m.group().translate(table), text)


def remove_control_chars(text: str, inc: Inc) -> str:
    """Delete control and invisible characters; tab -> space, CR/VT/FF/NEL/LS/PS -> "\\n".

    ``"\\r\\n"`` thus becomes ``"\\n\\n"``; ``normalize_whitespace`` drops the empty line.
    """
    out, n = _translate_runs(_CONTROL_RE, _CONTROL_TABLE, text)
    if n:
        inc("clean:normalized:control_chars")
    return out


def remove_replacement_chars(text: str, inc: Inc) -> str:
    """Delete U+FFFD.

    U+FFFD marks bytes lost in an upstream decode; the original character is
    unrecoverable, and keeping the marker would only teach the model an [UNK]
    -like token. A document made mostly of them is mis-decoded as a whole and is
    dropped by the ``bad_encoding`` filter (which looks at the raw text).
    """
    if "\ufffd" not in text:
        return text
    inc("clean:normalized:replacement_char")
    return text.replace("\ufffd", "")


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------

# Only well-formed references with a ";" are decoded: html.unescape alone would
# also decode legacy forms without ";" ("&copy=2" in a URL -> "©=2").
_ENTITY_RE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
# Entities that decode to a space-like character become a plain space.
_SPACE_LIKE = frozenset("\xa0\u2002\u2003\u2009\u200a\u202f\u205f\u3000")

# Tags that end a line or a block become "\n", table cells a space, other
# (inline) tags nothing: Chinese has no spaces between words, so "<b>中</b>国"
# must stay "中国".
_BLOCK_TAGS = ("br p div li ul ol dl dt dd tr table tbody thead tfoot caption h1 h2 h3 h4 h5 "
               "h6 hr blockquote pre section article header footer aside nav main figure "
               "figcaption form title address center").split()
_CELL_TAGS = ("td", "th")
_INLINE_TAGS = ("a abbr b big cite code del dfn em font i img ins kbd mark q s samp small span "
                "strike strong sub sup tt u var wbr html head body meta link input button label "
                "select option textarea iframe embed object param source video audio picture "
                "svg time nobr "
                # MediaWiki tags WikiExtractor leaves behind
                "nowiki ref references gallery math poem onlyinclude includeonly noinclude "
                "syntaxhighlight chem ce score timeline").split()
_TAG_NAMES = {**{t: "\n" for t in _BLOCK_TAGS}, **{t: " " for t in _CELL_TAGS},
              **{t: "" for t in _INLINE_TAGS}}
# A tag: "<", optional "/", an allowlisted name, then whitespace, "/" or ">"
# (so "<u, v>", "<WICK-ee>" and "a<b," never match), attributes without
# "<"/">", ">". Names sorted longest first so "br" is not matched as "b".
# Accepted risk: a formula like "a<b and c>d" reads as a <b ...> tag.
_TAG_RE = re.compile(
    r"</?(" + "|".join(sorted(_TAG_NAMES, key=len, reverse=True)) + r")(?=[\s/>])[^<>]{0,1000}>",
    re.IGNORECASE)
# Script/style bodies and comments are not text: remove them with their content.
_DROP_BLOCK_RE = re.compile(
    r"<(script|style|noscript)(?=[\s>])[^<>]{0,1000}>.{0,100000}?</\1\s*>|<!--.{0,100000}?-->",
    re.IGNORECASE | re.DOTALL)


def _entity(m: re.Match) -> str:
    s = html.unescape(m.group())
    return " " if s in _SPACE_LIKE else s


def unescape_html_and_strip_tags(text: str, inc: Inc) -> str:
    """Decode HTML entities (``&nbsp;`` -> space) and strip allowlisted tags.

    Entities are decoded twice because crawls often double-escape
    (``&amp;nbsp;``). Block tags (``<br>``, ``<p>``, ...) -> "\\n", ``<td>``/``<th>``
    -> space, other known tags -> nothing; ``<script>``/``<style>`` blocks and
    comments are removed with their content. Unknown names and anything not
    shaped like a tag ("a < b", "<u, v>", 《书名》) are left as they are.
    """
    out = text
    if "&" in out:
        out = _ENTITY_RE.sub(_entity, out)
        if "&" in out:
            out = _ENTITY_RE.sub(_entity, out)
    if "<" in out:
        out = _DROP_BLOCK_RE.sub("", out)
        out = _TAG_RE.sub(lambda m: _TAG_NAMES[m.group(1).lower()], out)
    if out != text:
        inc("clean:normalized:html")
    return out


# --------------------------------------------------------------------------
# Wikipedia language-variant markup
# --------------------------------------------------------------------------

# -{...}- on one line; bounded so a stray "-{" cannot make the match quadratic.
_WIKI_RE = re.compile(r"-\{([^\n]{0,2000}?)\}-")
# Flags before "|": H (hidden rule), T (title rule), - (remove rule) display
# nothing; A (add rule and show), R (raw), D (describe) and a variant list
# ("zh-hans;zh-hant|...") display the content.
_WIKI_FLAG_RE = re.compile(r"^\s*([A-Z\-]|zh(?:-[a-z]+)?(?:\s*;\s*zh(?:-[a-z]+)?)*)\s*\|")
_WIKI_HIDDEN_FLAGS = frozenset("HT-")
_WIKI_VARIANT_RE = re.compile(r"\s*(zh(?:-[A-Za-z]+)?)\s*:")
# Preferred variant order for Simplified (mainland) output.
WIKI_VARIANT_ORDER = ("zh-cn", "zh-hans", "zh-sg", "zh")


def _wiki_choose(body: str) -> str:
    flag = _WIKI_FLAG_RE.match(body)
    if flag:
        f = flag.group(1).strip()
        if f in _WIKI_HIDDEN_FLAGS:
            return ""
        body = body[flag.end():]
        if f == "R":
            return body
    variants: dict[str, str] = {}
    first: Optional[str] = None
    last: Optional[str] = None
    for piece in body.split(";"):
        m = _WIKI_VARIANT_RE.match(piece)
        if m:
            last = m.group(1).lower()
            variants.setdefault(last, piece[m.end():])
            if first is None:
                first = last
        elif not piece.strip():
            continue  # the trailing ";" of "zh-cn:…;zh-tw:…;"
        elif last is not None:
            # A ";" inside a variant's text (no "code:" after it): re-attach.
            variants[last] += ";" + piece
        else:
            # Text before any "code:" means this is not a variant list.
            return body
    if first is None:
        return body  # -{X}-: X is protected from conversion, shown as is
    for code in WIKI_VARIANT_ORDER:
        if code in variants:
            return variants[code].strip()
    return variants[first].strip()


def resolve_wiki_markup(text: str, inc: Inc) -> str:
    """Replace ``-{zh-cn:…;zh-tw:…}-`` by one variant, ``-{X}-`` by X.

    Variant choice: zh-cn, zh-hans, zh-sg, zh, else the first one. Hidden rules
    (``-{H|…}-``, ``-{T|…}-``, ``-{-|…}-``) are removed; ``-{A|…}-`` is shown.
    """
    if "-{" not in text:
        return text
    out = _WIKI_RE.sub(lambda m: _wiki_choose(m.group(1)), text)
    if out != text:
        inc("clean:normalized:wiki_markup")
    return out


# --------------------------------------------------------------------------
# Width
# --------------------------------------------------------------------------

# Full-width punctuation that Chinese text uses as its own punctuation stays
# full-width: ！（），：；？～ (U+FF01 FF08 FF09 FF0C FF1A FF1B FF1F FF5E); the
# CJK-block punctuation (。、「」『』《》…— etc.) is outside U+FF01-FF5E anyway.
KEEP_FULLWIDTH = "！（），：；？～"
# Everything else in U+FF01-FF5E folds to ASCII (U+FF01 + n -> U+0021 + n):
# digits ０-９, letters Ａ-Ｚ ａ-ｚ and the symbols ＂＃＄％＆＇＊＋－．／＜＝＞＠［＼］＾＿｀｛｜｝
# -- in Chinese text these are numbers, codes, URLs and formulas, which should
# look the same as their ASCII spelling ("２０１２年" == "2012年").
# U+3000 ideographic space -> " "; half-width CJK punctuation ｡｢｣､ (U+FF61-FF64)
# -> its normal full-width form 。「」、.
_WIDTH_TABLE: dict[int, str] = {
    c: chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F) if chr(c) not in KEEP_FULLWIDTH}
_WIDTH_TABLE[0x3000] = " "
_WIDTH_TABLE.update({0xFF61: "。", 0xFF62: "「", 0xFF63: "」", 0xFF64: "、"})
_WIDTH_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_WIDTH_TABLE)) + "]+")


def fold_width(text: str, inc: Inc) -> str:
    """Fold full-width ASCII letters, digits and symbols and U+3000 to ASCII.

    Chinese punctuation (``KEEP_FULLWIDTH`` and the CJK punctuation block) is kept.
    """
    out, n = _translate_runs(_WIDTH_RE, _WIDTH_TABLE, text)
    if n:
        inc("clean:normalized:width")
    return out


# --------------------------------------------------------------------------
# Traditional -> Simplified
# --------------------------------------------------------------------------


def load_t2s(config: str = "t2s") -> Any:
    """Load an OpenCC converter, ``opencc.OpenCC(config)`` (OpenCC 1.4.2 API).

    Callers load it once per process (``Cleaner.setup``); the import is deferred
    so that importing this module does not load the native library.
    """
    import opencc

    return opencc.OpenCC(config)


def to_simplified(text: str, converter: Any, inc: Inc) -> str:
    """Convert Traditional to Simplified with an OpenCC converter (``converter.convert``)."""
    if not text:
        return text
    out = converter.convert(text)
    if out != text:
        inc("clean:normalized:t2s")
    return out


# --------------------------------------------------------------------------
# Junk: separator lines, dotted leaders, long runs of one punctuation mark
# --------------------------------------------------------------------------

# A run of this many identical punctuation/symbol characters or more is junk
# (dotted leaders "……………", separators "-----", "=====", "◆◆◆◆"). Three is the
# longest run ordinary text uses ("！！！", "。。。", "???"; "……" and "——" are
# two characters each), so it stays.
JUNK_RUN_MIN = 4
# Characters Chinese writes in pairs: a run of them collapses to the pair (the
# ellipsis "……", the dash "——"); any other run to JUNK_RUN_KEEP characters.
PAIRED_PUNCT = "…—"
JUNK_RUN_KEEP = 3
# "Punctuation" here is anything that is neither a letter, a digit (\w minus
# "_") nor whitespace: Unicode P* and S* (·, ◆, ★, box drawing ─━│), and "_".
_PUNCT_RUN_RE = re.compile(r"([^\w\s]|_)\1{%d,}" % (JUNK_RUN_MIN - 1))
# A line with no letter and no digit (only punctuation, symbols and spaces):
# a separator ("-----", "* * *", "────"), a dotted leader or a lone mark. It
# carries no text, and as a sentence it would become an instance made of
# punctuation tokens.
_JUNK_LINE_RE = re.compile(r"^(?:[^\w\n]|_)+$", re.MULTILINE)


def _collapse_run(m: re.Match) -> str:
    c = m.group(1)
    return c * (2 if c in PAIRED_PUNCT else JUNK_RUN_KEEP)


def remove_junk(text: str, inc: Inc) -> str:
    """Remove junk lines and collapse long runs of one punctuation character.

    A line made only of punctuation, symbols and spaces (no letter, no digit)
    is emptied (``normalize_whitespace`` then drops it), counted per line as
    ``clean:edited:junk_lines``. In the lines that stay, a run of
    ``JUNK_RUN_MIN`` (4) or more of the same punctuation/symbol character is
    collapsed to 2 characters for ``…``/``—`` (the Chinese ellipsis and dash
    are written as pairs) and to 3 for anything else ("。。。。。。" -> "。。。",
    "-----------" -> "---"), counted per run as ``clean:edited:punct_runs``.
    Collapsing, not deleting, keeps the run's place as a separator
    ("人民日报------加入" must not become "人民日报加入").
    """
    lines = 0

    def junk_line(m: re.Match) -> str:
        nonlocal lines
        if m.group().strip():
            lines += 1
            return ""
        return m.group()   # spaces only: whitespace's business, not junk

    out = _JUNK_LINE_RE.sub(junk_line, text)
    out, runs = _PUNCT_RUN_RE.subn(_collapse_run, out)
    if lines:
        inc("clean:edited:junk_lines", lines)
    if runs:
        inc("clean:edited:punct_runs", runs)
    return out


# --------------------------------------------------------------------------
# Whitespace
# --------------------------------------------------------------------------

# Space-like characters that are not already handled (U+3000 is width's); tab
# too, for text that did not go through remove_control_chars.
_SPACE_TABLE = {c: " " for c in (0x09, 0x00A0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F)}
_SPACE_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in _SPACE_TABLE) + "]+")
# Patterns start with a literal so the regex engine can skip ahead quickly
# (" {2,}" and " ?\n" were 10-40x slower on news text).
_MULTI_SPACE_RE = re.compile("  +")
# A newline followed by spaces and/or more newlines (spaces before a newline
# are removed first with str.replace).
_NEWLINE_RUN_RE = re.compile("\n[ \n]+")

# CJK ideographs: URO, Ext A, compatibility, 〇, and the supplementary planes.
CJK_IDEOGRAPHS = ("\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
                  "\U00020000-\U0002ebef\U00030000-\U0003134f")
# Chinese punctuation next to which a space is never meaningful: a space on
# either side of it is removed ("c 。" -> "c。", "。 Python" -> "。Python").
CJK_PUNCT = "，。！？；：、「」『』（）《》〈〉【】〔〕"
# Punctuation English also uses ("said “hi” to", "wait… what", "a — b"): a
# space next to it is removed only when the other side is CJK.
SHARED_PUNCT = "“”‘’…—～·"
# A space between two ideographs is KEPT: in the corpus samples (news, CLUE,
# DuReader, wiki; ~5,000 cases) it nearly always separates things -- a
# headline from the body ("神情落寞 吴伯雄血压升高"), names in a list ("宋子文
# 鄒魯 邵元沖"), a clause where informal text omits the comma ("我们点了蘑菇汤
# 蛮好喝的"); letter-spaced words ("水 泥 用 量") were 7 cases. Removing it
# would glue separate words and mislead the segmenter. Next to punctuation it
# is noise ("。&nbsp;每次" in crawled news).
# The pattern starts with the space and looks back over it: a leading
# lookbehind would be tried at every position (50x slower).
_CJK_PUNCT_SPACE_RE = re.compile(
    f" (?:(?<=[{CJK_PUNCT}] )|(?=[{CJK_PUNCT}])"
    f"|(?<=[{SHARED_PUNCT}] )(?=[{CJK_IDEOGRAPHS}])|(?<=[{CJK_IDEOGRAPHS}] )(?=[{SHARED_PUNCT}]))")


def normalize_whitespace(text: str, inc: Inc) -> str:
    """Spaces: fold space-likes to " ", collapse runs, strip lines, drop empty lines,
    remove spaces next to CJK punctuation. Paragraphs end up separated by one "\\n"."""
    out, _ = _translate_runs(_SPACE_RE, _SPACE_TABLE, text)
    if "  " in out:
        out = _MULTI_SPACE_RE.sub(" ", out)
    if "\n" in out:
        out = _NEWLINE_RUN_RE.sub("\n", out.replace(" \n", "\n"))
    out = out.strip(" \n")
    if " " in out:
        out = _CJK_PUNCT_SPACE_RE.sub("", out)
    if out != text:
        inc("clean:normalized:whitespace")
    return out


# --------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------


def normalize(text: str, inc: Inc, converter: Any = None) -> str:
    """Apply all rules in the documented order; T->S only when ``converter`` is given."""
    text = unescape_html_and_strip_tags(text, inc)
    text = remove_control_chars(text, inc)
    text = remove_replacement_chars(text, inc)
    text = resolve_wiki_markup(text, inc)
    text = fold_width(text, inc)
    if converter is not None:
        text = to_simplified(text, converter, inc)
    text = remove_junk(text, inc)
    return normalize_whitespace(text, inc)


def _no_count(name: str, n: int = 1) -> None:
    pass


def normalize_title(title: str, converter: Any = None) -> str:
    """Normalise a title like text, on one line; not counted (counters are per text)."""
    return normalize(title, _no_count, converter).replace("\n", " ")
