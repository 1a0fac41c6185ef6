"""Per-document quality signals (``meta.quality``), computed with numpy.

- ``cjk``: CJK ideographs / non-space characters;
- ``punct``: punctuation / non-space characters;
- ``sent_len``: mean sentence length in non-space characters (sentences end at
  。！？!?；; … or a line end);
- ``dup5``, ``dup10``: Gopher's "fraction of characters in duplicate n-grams"
  on characters (Chinese has no spaces to cut words at): characters covered by
  a repeated occurrence (every one after the first) of a character 5-gram /
  10-gram, over non-space characters, whitespace left out;
- ``boiler``: share of non-empty lines that look like web boilerplate
  (copyright, "click here", share/follow, ICP licence, next/previous article).

Every value is rounded to 4 decimals so documents and digests are stable.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

SIGNALS: tuple[str, ...] = ("cjk", "punct", "sent_len", "dup5", "dup10", "boiler")

_SPACE, _CJK, _PUNCT = 1, 2, 4
_TABLE: Optional[np.ndarray] = None

_SENT_END_RE = re.compile(r"[。！？!?；;…\n]+")
_BOILER_RE = re.compile(
    r"版权所有|Copyright|copyright|COPYRIGHT|©|All [Rr]ights [Rr]eserved|未经.{0,6}(?:许可|授权)|转载|免责声明|责任编辑|"
    r"点击(?:查看|进入|这里|下载|阅读|此处)|上一篇|下一篇|上一页|下一页|返回(?:顶部|首页|列表)|扫一扫|扫码|"
    r"二维码|关注(?:我们|公众号|微信)|分享到|ICP备|ICP证|公网安备|联系我们|关于我们|网站地图|登录|注册|"
    r"相关(?:阅读|文章|新闻|推荐)|阅读全文|更多(?:精彩|内容|资讯)|热门(?:推荐|文章)|本站|首页")


def _table() -> np.ndarray:
    """Code point -> class bits, built once per process (about 0.1 s)."""
    global _TABLE
    if _TABLE is None:
        import unicodedata
        t = np.zeros(0x110000, dtype=np.uint8)
        for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2CEAF),
                       (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)):
            t[lo:hi + 1] = _CJK
        for cp in range(0x3000):  # plus the CJK and full-width punctuation blocks below
            ch = chr(cp)
            if ch.isspace():
                t[cp] = _SPACE
            elif unicodedata.category(ch)[0] in "PS" and cp >= 0x21:
                t[cp] = _PUNCT
        for cp in list(range(0x3000, 0x3040)) + list(range(0xFE10, 0xFE70)) + list(range(0xFF00, 0xFF66)):
            ch = chr(cp)
            if ch.isspace():
                t[cp] = _SPACE
            elif unicodedata.category(ch)[0] in "PS":
                t[cp] = _PUNCT
        _TABLE = t
    return _TABLE


def codepoints(text: str) -> np.ndarray:
    """The text's code points as uint32 (lone surrogates kept, never an error)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


_BASE = np.uint64(1_000_003)
_BASE5 = np.uint64(1_000_003 ** 5 % 2**64)  # wraps like the hashes


def _ngram_hashes(cps: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash of every n-gram in uint64 (wraps; collisions are ~2^-64 rare)."""
    m = cps.shape[0] - n + 1
    h = np.zeros(m, dtype=np.uint64)
    x = cps.astype(np.uint64)
    for k in range(n):
        h = h * _BASE + x[k:k + m]
    return h


def dup_ngram_frac(cps: np.ndarray, n: int, h: Optional[np.ndarray] = None) -> float:
    """Share of ``cps`` covered by repeated (not first) occurrences of n-grams
    (``h``: their hashes, when the caller has them)."""
    L = cps.shape[0]
    if L <= n:
        return 0.0
    m = L - n + 1
    if h is None:
        h = _ngram_hashes(cps, n)
    order = np.argsort(h)  # not stable: the first occurrence is the smallest position of its group
    hs = h[order]
    starts = np.flatnonzero(np.concatenate(([True], hs[1:] != hs[:-1])))
    if starts.size == m:
        return 0.0  # every n-gram distinct
    repeat = np.ones(m, dtype=np.int32)
    repeat[np.minimum.reduceat(order, starts)] = 0
    # Character i is covered when a repeated n-gram starts in (i - n, i].
    c = np.concatenate(([0], np.cumsum(np.concatenate((repeat, np.zeros(n - 1, dtype=np.int32))))))
    lo = np.maximum(np.arange(L) - n + 1, 0)
    return float(np.count_nonzero(c[1:] - c[lo])) / L


def quality_signals(text: str) -> dict[str, float]:
    """The signals of one document (see the module docstring)."""
    cps = codepoints(text)
    cls = _table()[cps]
    nonspace = cps[(cls & _SPACE) == 0]
    ns = int(nonspace.shape[0])
    if ns == 0:
        return {k: 0.0 for k in SIGNALS}
    h5 = _ngram_hashes(nonspace, 5) if ns > 5 else None
    dup5 = dup_ngram_frac(nonspace, 5, h5)
    n_cjk = int(np.count_nonzero(cls & _CJK))
    n_punct = int(np.count_nonzero(cls & _PUNCT))
    sentences = sum(1 for s in _SENT_END_RE.split(text) if s.strip())
    lines = [ln for ln in text.split("\n") if ln.strip()]
    # One scan of the whole text first: most documents have no boilerplate at all.
    boiler = sum(1 for ln in lines if _BOILER_RE.search(ln)) if _BOILER_RE.search(text) else 0
    return {
        "cjk": round(n_cjk / ns, 4),
        "punct": round(n_punct / ns, 4),
        "sent_len": round(ns / max(1, sentences), 2),
        "dup5": round(dup5, 4),
        # A 10-gram repeats only where 5-grams repeat; its hash is two 5-gram hashes combined.
        "dup10": round(dup_ngram_frac(nonspace, 10, h5[:-5] * _BASE5 + h5[5:]) if dup5 and ns > 10 else 0.0, 4),
        "boiler": round(boiler / max(1, len(lines)), 4),
    }
