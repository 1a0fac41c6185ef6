"""jieba behind the ``Segmenter`` interface, with a faster exact re-implementation.

``jieba.Tokenizer.cut`` spends most of its time building a DAG dict, a route
dict and generator tuples. ``_JiebaCore`` runs the same algorithm (prefix-dict
DAG, max-log-probability route, HMM for runs of unknown single characters, the
same regexes and tie-breaking, the same float operations in the same order) on
lists and returns word lengths instead of strings, and caches the HMM result per
unknown run. ``tests/test_jieba_segmenter.py`` checks it is word-for-word equal to
``jieba.Tokenizer.lcut`` on the shared corpus; ``fast=False`` uses ``lcut``.
"""

from __future__ import annotations

import logging

import hashlib
import os
from itertools import accumulate
from math import log
from typing import Any, Optional, Sequence

import jieba
import numpy as np
from jieba import finalseg

from corpusflow.segment.base import Segmenter, Span, words_to_spans
# (numpy-only helper shared with the jieba-rs backend; rjieba is not imported)
from corpusflow.segment.jieba_rs_backend import joined_word_starts

# jieba's own regexes (jieba/__init__.py, 0.42.1): han-or-alnum blocks are cut,
# whitespace runs are kept as words, anything else becomes one word per char.
_RE_HAN = jieba.re_han_default
_RE_SKIP = jieba.re_skip_default
_RE_ENG = jieba.re_eng

_MISSING = object()  # "not in the dictionary, not even as a prefix"

# Bounded caches (a worker segments millions of sentences; cleared when full):
# unknown-character runs repeat a lot (names), whole blocks ~5% on news.
_HMM_CACHE_MAX = 100_000
_BLOCK_CACHE_MAX = 50_000


class _JiebaCore:
    """jieba's accurate mode (``cut(s, cut_all=False, HMM=...)``) on word lengths."""

    def __init__(self, tok: "jieba.Tokenizer") -> None:
        self.freq: dict[str, int] = tok.FREQ
        self.logtotal = log(tok.total)
        # ``log(freq) - logtotal`` per dictionary word, ``None`` for prefixes
        # (frequency 0): ``_route`` then does one lookup and one addition per
        # candidate. The same float as jieba's ``log(f) - logtotal + route``,
        # which evaluates left to right. ~25 MB and 0.15 s for jieba's
        # dictionary, so built on first use (not for ``identity()``-only setups).
        self._logp: Optional[dict[str, Optional[float]]] = None
        self.hmm_cache: dict[str, list[int]] = {}
        self.block_cache: dict[tuple[str, bool], list[int]] = {}

    def _log_probs(self) -> dict[str, Optional[float]]:
        if self._logp is None:
            lt = self.logtotal
            self._logp = {w: (log(f) - lt if f else None) for w, f in self.freq.items()}
        return self._logp

    def lengths(self, sentence: str, hmm: bool) -> list[int]:
        """Word lengths of ``sentence`` in order (they sum to ``len(sentence)``)."""
        out: list[int] = []
        cache = self.block_cache
        # The regexes have one capturing group, so split() alternates
        # [text between matches, match, ...]: odd items are the matches (what
        # jieba tests with re.match), even items never match.
        for n, blk in enumerate(_RE_HAN.split(sentence)):
            if not blk:
                continue
            if n & 1:
                key = (blk, hmm)
                ls = cache.get(key)
                if ls is None:
                    ls = self._cut_block(blk, hmm)
                    if len(cache) >= _BLOCK_CACHE_MAX:
                        cache.clear()
                    cache[key] = ls
                out.extend(ls)
            elif len(blk) == 1:
                # One character (most punctuation): a word of length 1 either way.
                out.append(1)
            else:
                # jieba: whitespace runs (re_skip matches) are one word, every
                # other character is its own word.
                for m, x in enumerate(_RE_SKIP.split(blk)):
                    if not x:
                        continue
                    if m & 1:
                        out.append(len(x))
                    else:
                        out.extend([1] * len(x))
        return out

    def _route(self, s: str) -> list[int]:
        """Exclusive end of the best word starting at each position.

        Same as jieba's ``get_DAG`` + ``calc`` fused into one backward pass:
        candidate ends are visited in ascending order and ``>=`` keeps the later
        one on ties, which is what ``max((p, x) ...)`` does in jieba.
        """
        n = len(s)
        get = self._log_probs().get
        missing = _MISSING
        # No candidate: jieba's log(FREQ.get(c) or 1) - logtotal, and log(1) == 0.
        no_word = 0.0 - self.logtotal
        rp = [0.0] * (n + 1)
        rx = [0] * (n + 1)
        for k in range(n - 1, -1, -1):
            best = None
            bx = k
            i = k
            lp = get(s[k], missing)
            while lp is not missing:   # s[k:i + 1] is a word or a prefix of one
                if lp is not None:
                    p = lp + rp[i + 1]
                    if best is None or p >= best:
                        best = p
                        bx = i
                i += 1
                if i >= n:
                    break
                lp = get(s[k:i + 1], missing)
            if best is None:
                best = no_word + rp[k + 1]
                bx = k
            rp[k] = best
            rx[k] = bx + 1
        return rx

    def _cut_block(self, s: str, hmm: bool) -> list[int]:
        rx = self._route(s)
        n = len(s)
        out: list[int] = []
        x = 0
        if not hmm:
            # __cut_DAG_NO_HMM: runs of single ASCII alnum chars merge into one word.
            eng = 0
            while x < n:
                y = rx[x]
                if y - x == 1 and _RE_ENG.match(s[x]):
                    eng += 1
                else:
                    if eng:
                        out.append(eng)
                        eng = 0
                    out.append(y - x)
                x = y
            if eng:
                out.append(eng)
            return out
        # __cut_DAG: runs of single-char words go to the HMM unless the run is
        # itself a dictionary word (then they stay single chars).
        buf_start = -1
        while x < n:
            y = rx[x]
            if y - x == 1:
                if buf_start < 0:
                    buf_start = x
            else:
                if buf_start >= 0:
                    self._flush(s[buf_start:x], out)
                    buf_start = -1
                out.append(y - x)
            x = y
        if buf_start >= 0:
            self._flush(s[buf_start:n], out)
        return out

    def _flush(self, buf: str, out: list[int]) -> None:
        if len(buf) == 1:
            out.append(1)
        elif not self.freq.get(buf):
            ls = self.hmm_cache.get(buf)
            if ls is None:
                ls = _hmm_lengths(buf)
                if len(self.hmm_cache) >= _HMM_CACHE_MAX:
                    self.hmm_cache.clear()
                self.hmm_cache[buf] = ls
            out.extend(ls)
        else:
            out.extend([1] * len(buf))


# jieba's HMM (finalseg): start/transition/emission log-probabilities.
_MIN_FLOAT = finalseg.MIN_FLOAT
_START = finalseg.start_P
_TRANS = finalseg.trans_P
_EMIT = finalseg.emit_P
_RE_HMM_HAN = finalseg.re_han
_RE_HMM_SKIP = finalseg.re_skip
# One lookup per character instead of four: char -> (eB, eM, eE, eS).
_EMIT4: dict[str, tuple[float, float, float, float]] = {
    c: tuple(_EMIT[y].get(c, _MIN_FLOAT) for y in "BMES")  # type: ignore[misc]
    for c in set().union(*(_EMIT[y].keys() for y in "BMES"))
}
_EMIT_NONE = (_MIN_FLOAT,) * 4


def _tr(a: str, b: str) -> float:
    return _TRANS[a].get(b, _MIN_FLOAT)


_T_EB, _T_SB = _tr("E", "B"), _tr("S", "B")
_T_MM, _T_BM = _tr("M", "M"), _tr("B", "M")
_T_SS, _T_ES = _tr("S", "S"), _tr("E", "S")
_T_BE, _T_ME = _tr("B", "E"), _tr("M", "E")


def _viterbi_states(obs: str) -> str:
    """``finalseg.viterbi(obs, 'BMES', ...)``'s best path, as a string.

    Unrolled for the four states. Every sum is computed as jieba does,
    ``(V + trans) + emit``, and ties go to the larger state letter, as
    ``max((prob, state) ...)`` does; so the path is identical.
    """
    e = _EMIT4.get(obs[0], _EMIT_NONE)
    vb = _START["B"] + e[0]
    vm = _START["M"] + e[1]
    ve = _START["E"] + e[2]
    vs = _START["S"] + e[3]
    back: list[tuple[str, str, str, str]] = []
    for c in obs[1:]:
        eb, em, ee, es = _EMIT4.get(c, _EMIT_NONE)
        # B <- E|S (tie: S)
        p1 = ve + _T_EB + eb
        p2 = vs + _T_SB + eb
        if p2 >= p1:
            nb, fb = p2, "S"
        else:
            nb, fb = p1, "E"
        # M <- M|B (tie: M)
        p1 = vm + _T_MM + em
        p2 = vb + _T_BM + em
        if p1 >= p2:
            nm, fm = p1, "M"
        else:
            nm, fm = p2, "B"
        # S <- S|E (tie: S)
        p1 = vs + _T_SS + es
        p2 = ve + _T_ES + es
        if p1 >= p2:
            ns, fs = p1, "S"
        else:
            ns, fs = p2, "E"
        # E <- B|M (tie: M)
        p1 = vb + _T_BE + ee
        p2 = vm + _T_ME + ee
        if p2 >= p1:
            ne, fe = p2, "M"
        else:
            ne, fe = p1, "B"
        back.append((fb, fm, fe, fs))
        vb, vm, ve, vs = nb, nm, ne, ns
    state = "S" if vs >= ve else "E"
    path = [state]
    idx = {"B": 0, "M": 1, "E": 2, "S": 3}
    for bp in reversed(back):
        state = bp[idx[state]]
        path.append(state)
    path.reverse()
    return "".join(path)


def _hmm_lengths(buf: str) -> list[int]:
    """Word lengths of ``finalseg.cut(buf)`` (jieba's HMM for unknown runs)."""
    out: list[int] = []
    force_split = finalseg.Force_Split_Words
    for blk in _RE_HMM_HAN.split(buf):
        if not blk:
            continue
        if _RE_HMM_HAN.match(blk):
            pos = _viterbi_states(blk)
            begin = nexti = 0
            words: list[tuple[int, int]] = []
            for i, st in enumerate(pos):
                if st == "B":
                    begin = i
                elif st == "E":
                    words.append((begin, i + 1))
                    nexti = i + 1
                elif st == "S":
                    words.append((i, i + 1))
                    nexti = i + 1
            if nexti < len(blk):
                words.append((nexti, len(blk)))
            for a, b in words:
                if b - a > 1 and blk[a:b] in force_split:
                    out.extend([1] * (b - a))
                else:
                    out.append(b - a)
        else:
            out.extend(len(x) for x in _RE_HMM_SKIP.split(blk) if x)
    return out


def _sha256_file(path: str, h: Any) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


class JiebaSegmenter(Segmenter):
    """jieba accurate-mode segmentation.

    Picklable until ``setup()`` (and after: the loaded dictionary is dropped from
    the pickle and rebuilt by the next ``setup()``), so a Beam DoFn can carry it.
    """

    name = "jieba"

    def __init__(self, user_dict: Optional[str] = None, hmm: bool = True,
                 fast: bool = True) -> None:
        super().__init__()
        self.user_dict = user_dict
        self.hmm = hmm
        # fast=False calls jieba's own lcut (slower; the reference for tests).
        self.fast = fast
        self._tok: Any = None
        self._core: Optional[_JiebaCore] = None
        self._identity: Optional[dict] = None

    def setup(self) -> None:
        """Load jieba's dictionary once into a private ``jieba.Tokenizer``."""
        if self._tok is not None:
            return
        # jieba logs every dictionary load at DEBUG on its own stderr handler:
        # once per worker and stage, noise in a build's output.
        jieba.setLogLevel(logging.WARNING)
        # A private instance: the global jieba.dt may carry another caller's
        # user words, and we must not add ours to it.
        tok = jieba.Tokenizer()
        tok.initialize()
        if self.user_dict:
            tok.load_userdict(self.user_dict)
        self._tok = tok
        self._core = _JiebaCore(tok)

    def __getstate__(self) -> dict:
        # jieba.Tokenizer holds a threading.RLock (unpicklable) and ~60 MB of
        # dictionary; workers rebuild it in setup().
        state = self.__dict__.copy()
        state["_tok"] = None
        state["_core"] = None
        return state

    def _segment_batch(self, sentences: Sequence[str]) -> list[list[Span]]:
        self.setup()
        seen: dict[str, list[Span]] = {}
        out: list[list[Span]] = []
        for s in sentences:
            spans = seen.get(s)
            if spans is None:
                spans = self._segment_one(s)
                seen[s] = spans
            # Callers may mutate the lists they get; repeated sentences share
            # the tuples but not the list.
            out.append(list(spans))
        return out

    def word_starts(self, sentences: Sequence[str]) -> Optional[np.ndarray]:
        """Word starts of ``"\\n".join(sentences)`` from one cut of the whole
        document (see ``jieba_rs_backend.joined_word_starts``: jieba's blocks
        never cross a newline); ``None`` means "use ``segment_batch``"."""
        if not self.fast:
            return None
        self.setup()
        assert self._core is not None
        try:
            lengths = self._core.lengths("\n".join(sentences), self.hmm)
        except Exception:  # noqa: BLE001 - the per-sentence path handles failures
            return None
        return joined_word_starts(lengths, sentences)

    def _segment_one(self, s: str) -> list[Span]:
        if self.fast:
            assert self._core is not None
            lengths = self._core.lengths(s, self.hmm)
        else:
            lengths = [len(w) for w in self._tok.lcut(s, HMM=self.hmm)]
        ends = list(accumulate(lengths))
        if (ends[-1] if ends else 0) != len(s):  # jieba is lossless; guard anyway
            return words_to_spans(s, self._tok.lcut(s, HMM=self.hmm))
        return list(zip([0] + ends[:-1], ends))

    def identity(self) -> dict:
        """Name, jieba version and sha256 of the dictionary (+ user dict) bytes."""
        if self._identity is None:
            h = hashlib.sha256()
            dict_path = jieba.Tokenizer().dictionary or os.path.join(
                os.path.dirname(jieba.__file__), jieba.DEFAULT_DICT_NAME)
            _sha256_file(dict_path, h)
            if self.user_dict:
                h.update(b"\x00user_dict\x00")
                _sha256_file(self.user_dict, h)
            self._identity = {"name": "jieba", "version": jieba.__version__,
                              "model_hash": h.hexdigest()}
        return dict(self._identity)
