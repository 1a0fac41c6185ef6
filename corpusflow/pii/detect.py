"""Find personal identifiers in Chinese text: candidates by regex, then validators.

``find_pii(text)`` returns non-overlapping ``Span(start, end, type)`` in text
order. ``redact`` replaces each span with its typed placeholder (``PLACEHOLDERS``).

Linear time on any input. Python's ``re`` does not memoise, so a pattern whose
start can match anywhere inside a long run (``\\d+``, ``[\\w.]+@``) costs
O(run length) per start position: O(n^2) on a line of digits. Every pattern
here therefore checks, right after its first character, a lookbehind that
fails inside a run of its own characters (only a run's first character can
start a match) and has bounded repetitions only, so each start position costs
O(1) and a text costs O(n) (``tests/test_pii.py`` times megabyte runs of
digits and other worst cases). The labelled kinds (QQ, WeChat, passport)
start with a fixed label.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple, Optional

from corpusflow.pii import validators as v

#: Detected types, in priority order: when two candidates cover the same
#: characters the earlier type wins (a valid ID that also passes Luhn is an ID).
TYPES: tuple[str, ...] = ("id", "bank_card", "mobile", "landline", "email", "ip",
                          "qq", "wechat", "passport", "plate")

#: The placeholder each type is replaced with in ``redact`` mode. Brackets and
#: lower-case ASCII names: BERT's basic tokenizer splits ``[``/``]`` off and the
#: name is one word, so with the standard Chinese vocab (uncased) every
#: placeholder is ``[`` + name piece(s) + ``]``, never [UNK] and never an
#: ``[unusedN]`` id, with or without lower-casing; ``vocab.build`` makes each
#: name a whole entry of the vocabs it builds.
PLACEHOLDERS: dict[str, str] = {
    "id": "[id]", "bank_card": "[card]", "mobile": "[mobile]", "landline": "[tel]",
    "email": "[email]", "ip": "[ip]", "qq": "[qq]", "wechat": "[wechat]",
    "passport": "[passport]", "plate": "[plate]",
}


class Span(NamedTuple):
    start: int
    end: int
    type: str


_A = "0-9A-Za-z"  # ASCII alphanumerics: a number glued to these is part of a longer token
# Every pattern starts with a character (class) and checks what precedes that
# first character with a two-character lookbehind placed *after* it ("." is
# the first character itself). A pattern that starts with a lookbehind gets no
# first-character scan from ``re`` and costs ~10x more on ordinary text.
# Not inside a longer number or word, not the fraction of a decimal:
_PRE1 = rf"(?<![{_A}].)(?<![0-9]\..)(?<![0-9]-.)"
_POST = rf"(?![{_A}])(?!\.[0-9])(?!-[0-9])"
# The +86 / 0086 country prefixes, not glued to a word or a longer number.
_CC = rf"(?:\+(?<![{_A}+].) ?86|0(?<![{_A}+].)086)[ -]?"

_ID_RE = re.compile(r"[1-9]" + _PRE1 + r"[0-9]{5}[ -]?[0-9]{8}[ -]?[0-9]{3}[0-9Xx]" + _POST)
_ID15_RE = re.compile(r"[1-9]" + _PRE1 + r"[0-9]{14}" + _POST)
_CARD_RE = re.compile(r"[0-9]" + _PRE1 + r"[0-9]{3}(?:[ -]?[0-9]{4}){3}(?:[ -]?[0-9]{1,3})?" + _POST)
_MOBILE_BODY = r"[3-9][0-9](?:[ -]?[0-9]{4}){2}" + _POST
_MOBILE_RE = re.compile(rf"1(?<![{_A}+].)(?<![0-9]\..)(?<![0-9]-.)" + _MOBILE_BODY)
_MOBILE_CC_RE = re.compile(rf"(?:{_CC}|\((?<![{_A}].)\+86\)[ -]?|（\+86）[ -]?)1" + _MOBILE_BODY)
# Area codes: 010 and 02x have 8-digit local numbers, 0[3-9]xx 7 or 8.
_LOCAL = r"(?:(?:10|2[0-9])[ -]?[2-9][0-9]{7}|[3-9][0-9]{2}[ -]?[2-9][0-9]{6,7})"
_LOCAL_P = r"(?:(?:10|2[0-9])[)）][ -]?[2-9][0-9]{7}|[3-9][0-9]{2}[)）][ -]?[2-9][0-9]{6,7})"
_EXT = r"(?:(?:-|转|分机|ext\.?)[0-9]{1,6})?" + _POST
_LANDLINE_RE = re.compile(rf"0(?<![{_A}+].)(?<![0-9]\..)(?<![0-9]-.)" + _LOCAL + _EXT)
_LANDLINE_CC_RE = re.compile(_CC + _LOCAL + _EXT)
_LANDLINE_P_RE = re.compile(r"[(（]0" + _LOCAL_P + _EXT)
_EMAIL_RE = re.compile(
    r"[0-9A-Za-z](?<![0-9A-Za-z._%+\-].)[0-9A-Za-z._%+\-]{0,63}@"
    r"(?:[0-9A-Za-z](?:[0-9A-Za-z\-]{0,61}[0-9A-Za-z])?\.){1,8}"
    # A lower-case top-level domain may be glued to capitals that follow it
    # ("a@b.cnWAP: ..."): the address ends at the case change.
    r"(?:[a-z]{2,24}(?![0-9a-z\-])|[A-Za-z]{2,24}(?![0-9A-Za-z\-]))")
_IPV4_RE = re.compile(r"[0-9](?<![0-9A-Za-z.].)[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}(?![0-9])(?!\.[0-9])")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:](?<![0-9A-Za-z:.].)(?:(?<=:)|(?=[0-9A-Fa-f]{0,3}:))[0-9A-Fa-f:]{1,38}"
                      r"(?![0-9A-Za-z:])")
_SEP = r"[ \t]{0,2}(?:[:：]|是|为)?[ \t]{0,2}"
_QQ_RE = re.compile(r"(?:Q(?<![A-Za-z].)[Qq]|q(?<![A-Za-z].)q|扣扣)(?:号码|号|群号?|账号)?" + _SEP
                    + r"(?P<v>[1-9][0-9]{4,11})(?![0-9A-Za-z])")
_WECHAT_RE = re.compile(
    r"(?:V(?<![A-Za-z].)[Xx]|v(?<![A-Za-z].)x|W(?<![A-Za-z].)(?:[Xx]|e[Cc]hat|ECHAT)|w(?<![A-Za-z].)(?:x|eixin|echat)"
    r"|微信|威信)"
    r"(?:号码|号|账号|ID|id)?" + _SEP + r"(?P<v>[A-Za-z0-9][A-Za-z0-9_\-]{5,19})(?![A-Za-z0-9_\-])")
_PASSPORT_RE = re.compile(
    r"(?:护照|P(?<![A-Za-z].)(?:assport|ASSPORT)|p(?<![A-Za-z].)assport)(?:号码|号|编号|[ \t]?[Nn]o\.?|[ \t]?[Nn]umber)?" + _SEP
    + r"(?P<v>[A-Za-z]{1,2}[0-9]{6,9})(?![0-9A-Za-z])")
_PLATE_RE = re.compile(
    r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-HJ-NP-Z][·• ]?"
    r"(?:[DF][A-HJ-NP-Z0-9][0-9]{4}|[0-9]{5}[DF]|[A-HJ-NP-Z0-9]{4}[A-HJ-NP-Z0-9挂学警港澳])"
    r"(?![0-9A-Za-z])")

# Labels that say the number that follows is not personal data (an order, a
# parcel, a stock, a book), and labels that say it is. The nearest one before a
# number within _LABEL_WINDOW characters decides; none means "judge the digits".
_NEG_LABEL_RE = re.compile(
    r"订单|单号|运单|快递单|物流|编号|编码|流水号|交易号|商户号|股票|代码|证券|ISBN|isbn|书号|型号|序列号|"
    r"批号|批准文号|条码|条形码|发票|合同号|工单|案号|备案号|登记号|专利号|邮编|邮政编码|价格|售价|金额|货号|"
    r"会员号|学号|工号|账户余额|版本")
_POS_LABEL_RE = re.compile(
    r"电话|手机|手机号|联系|致电|拨打|来电|热线|座机|传真|身份证|证件|卡号|银行卡|储蓄卡|信用卡|借记卡|账号|"
    r"帐号|[Tt]el|TEL|[Pp]hone|[Mm]obile|号码")
_LABEL_WINDOW = 12
_CLAUSE_END_RE = re.compile(r"[。！？；;\n]")
# A 15-digit ID is only taken after one of these (close by): 15 random digits
# pass its province + date check about 1% of the time, too often for a bare run.
_ID15_LABEL_RE = re.compile(r"身份证|证件|公民身份号码|[Ii][Dd]")
_ID15_WINDOW = 16


def _digits(s: str) -> str:
    return "".join(c for c in s if "0" <= c <= "9" or c in "Xx")


def _decoy_context(text: str, start: int) -> bool:
    """True when the nearest label before ``start`` in its clause says "not personal"."""
    window = _CLAUSE_END_RE.split(text[max(0, start - _LABEL_WINDOW):start])[-1]
    neg = -1
    for m in _NEG_LABEL_RE.finditer(window):
        neg = m.end()
    if neg < 0:
        return False
    pos = -1
    for m in _POS_LABEL_RE.finditer(window):
        pos = m.end()
    return pos < neg


def _id_shaped(d: str) -> bool:
    """18 digits with an ID's province and a birth year 1900-2030 (the rest not asked)."""
    return (len(d) == 18 and d[:2] in v.PROVINCE_CODES
            and v.MIN_BIRTH_YEAR <= int(d[6:10]) <= v.MAX_BIRTH_YEAR)


def _check_id(text: str, m: re.Match) -> Optional[str]:
    d = _digits(m.group())
    return "id" if v.valid_id18(d) and not _decoy_context(text, m.start()) else None


def _check_id15(text: str, m: re.Match) -> Optional[str]:
    if not v.valid_id15(m.group()) or _decoy_context(text, m.start()):
        return None
    window = text[max(0, m.start() - _ID15_WINDOW):m.start()]
    return "id" if _ID15_LABEL_RE.search(window) else None


def _check_card(text: str, m: re.Match) -> Optional[str]:
    d = _digits(m.group())
    # An 18-digit number shaped like an ID (province, birth year) that failed
    # the ID checks is a mistyped or made-up ID, not a card; so is a number
    # after an ID label.
    if not v.valid_bank_card(d) or _id_shaped(d) or _decoy_context(text, m.start()):
        return None
    if _ID15_LABEL_RE.search(text[max(0, m.start() - _ID15_WINDOW):m.start()]):
        return None
    return "bank_card"


def _check_mobile(text: str, m: re.Match) -> Optional[str]:
    d = _digits(m.group())[-11:]
    return "mobile" if v.valid_mobile(d) and not _decoy_context(text, m.start()) else None


def _check_landline(text: str, m: re.Match) -> Optional[str]:
    return None if _decoy_context(text, m.start()) else "landline"


def _check_ipv4(text: str, m: re.Match) -> Optional[str]:
    return "ip" if v.valid_ipv4(m.group()) and not _decoy_context(text, m.start()) else None


def _check_ipv6(text: str, m: re.Match) -> Optional[str]:
    return "ip" if v.valid_ipv6(m.group()) else None


def _always(kind: str) -> Callable[[str, re.Match], Optional[str]]:
    return lambda text, m: kind


def _plate(text: str, m: re.Match) -> Optional[str]:
    # Plates are mostly digits: at least 3 of the last 5-6 characters (so a
    # province character before capitals, e.g. an abbreviation, is left alone).
    tail = m.group()[2:]
    return "plate" if sum(c.isdigit() for c in tail) >= 3 else None


# (pattern, check) pairs; the check returns the type or None to drop a candidate.
_DETECTORS: tuple[tuple[re.Pattern, Callable[[str, re.Match], Optional[str]], str], ...] = (
    (_ID_RE, _check_id, "0123456789"),
    (_ID15_RE, _check_id15, "0123456789"),
    (_CARD_RE, _check_card, "0123456789"),
    (_MOBILE_RE, _check_mobile, "0123456789"),
    (_MOBILE_CC_RE, _check_mobile, "+0"),
    (_LANDLINE_RE, _check_landline, "0123456789"),
    (_LANDLINE_CC_RE, _check_landline, "+0"),
    (_LANDLINE_P_RE, _check_landline, "(（"),
    (_EMAIL_RE, _always("email"), "@"),
    (_IPV4_RE, _check_ipv4, "."),
    (_IPV6_RE, _check_ipv6, ":"),
    (_QQ_RE, _always("qq"), "Qq扣"),
    (_WECHAT_RE, _always("wechat"), "VvWw微威"),
    (_PASSPORT_RE, _always("passport"), "护Pp"),
    (_PLATE_RE, _plate, "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"),
)
_PRIORITY = {t: i for i, t in enumerate(TYPES)}


def _may_contain(text: str, chars: str) -> bool:
    # A cheap pre-check: most documents have no '@' or ':', so whole regex
    # scans are skipped. str.__contains__ is a C loop per character.
    return any(c in text for c in chars)


def find_pii(text: str, types: Optional[frozenset[str]] = None) -> list[Span]:
    """Every validated identifier in ``text``: non-overlapping spans, in order.

    ``types`` limits the search (default: all of ``TYPES``). Overlapping
    candidates are resolved longest first, then by ``TYPES`` priority.
    """
    cands: list[Span] = []
    for rx, check, hint in _DETECTORS:
        if not _may_contain(text, hint):
            continue
        for m in rx.finditer(text):
            kind = check(text, m)
            if kind is None or (types is not None and kind not in types):
                continue
            if "v" in rx.groupindex:
                cands.append(Span(m.start("v"), m.end("v"), kind))
            else:
                cands.append(Span(m.start(), m.end(), kind))
    if not cands:
        return []
    cands.sort(key=lambda s: (s.start, -(s.end - s.start), _PRIORITY[s.type]))
    out: list[Span] = []
    end = -1
    for s in cands:
        if s.start >= end:
            out.append(s)
            end = s.end
    return out


def redact(text: str, spans: list[Span]) -> str:
    """``text`` with each span replaced by its type's placeholder."""
    if not spans:
        return text
    parts: list[str] = []
    pos = 0
    for s in spans:
        parts.append(text[pos:s.start])
        parts.append(PLACEHOLDERS[s.type])
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts)
