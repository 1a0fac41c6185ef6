"""BERT's tokenizer (basic + WordPiece), with character offsets and caches.

The same ids as Hugging Face's BERT tokenizers (``tokenizers``'
``BertWordPieceTokenizer``, ``transformers``' ``BertTokenizer``/``BertTokenizerFast``),
which follow google-research/bert ``tokenization.FullTokenizer``:

* basic: drop NUL, U+FFFD and control characters (see ``is_control``);
  whitespace (including U+2028/U+2029, which BERT's ``str.split()`` splits
  on) separates; every CJK ideograph (BERT's ``_is_chinese_char`` ranges) is
  its own word; with ``do_lower_case`` lower-case and strip accents (NFD, drop
  ``Mn``); every punctuation character is its own word;
* WordPiece: greedy longest match, ``##`` continuations, ``[UNK]`` for a word
  that cannot be pieced or is longer than 100 characters.

Where Hugging Face and Google's code differ, this follows Hugging Face (what
a model is fine-tuned with): lower-casing is per character, so a final ``Σ``
becomes ``σ`` (Google's per-word ``str.lower()`` gives ``ς``); private-use
characters are dropped (Google keeps them, making their word ``[UNK]``);
words of 101-200 characters are ``[UNK]`` (Google's limit is 200). Hugging
Face's own Unicode tables are older than Python's: characters assigned since
(e.g. U+061D, U+08CA-U+08D2) are classified here by ``unicodedata``, as
Google's code does. ``bench/tokenizer_agreement.py`` measures all of this.

``tokenize_with_offsets`` is what the pipeline uses: ids plus each token's
``[start, end)`` character span in the input, so segmenter word spans can be
mapped onto tokens. Chinese text is mostly one-character tokens, so each
character's outcome is cached in a dict and the inner loop is a dict lookup.
"""

from __future__ import annotations

import os
import unicodedata
from typing import Iterable, Sequence

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_INPUT_CHARS_PER_WORD = 100

# Character kinds (cached per character).
_DROP, _SPACE, _SINGLE, _WORD, _MIXED = range(5)

# _table values for characters that are not a single known token id:
# part of a run (per-character loop), not yet classified, whitespace.
_RUN, _UNSEEN, _SKIP = -1, -2, -3

# Caches are bounded: cleared when full instead of growing without limit.
_WORD_CACHE_MAX = 500_000
_CHAR_CACHE_MAX = 200_000
_RUN_CACHE_MAX = 200_000


def is_chinese_char(cp: int) -> bool:
    """BERT's CJK ranges (CJK Unified Ideographs + extensions + compatibility)."""
    return ((0x4E00 <= cp <= 0x9FFF) or (0x3400 <= cp <= 0x4DBF)
            or (0x20000 <= cp <= 0x2A6DF) or (0x2A700 <= cp <= 0x2B73F)
            or (0x2B740 <= cp <= 0x2B81F) or (0x2B820 <= cp <= 0x2CEAF)
            or (0xF900 <= cp <= 0xFAFF) or (0x2F800 <= cp <= 0x2FA1F))


def is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_control(ch: str) -> bool:
    """Characters the tokenizer drops: categories Cc, Cf (as BERT), Co (as Hugging
    Face; BERT keeps private-use characters, which then make their word [UNK]) and
    Cs (lone surrogates, which Hugging Face cannot receive at all). Unassigned
    code points (Cn) are kept, as both do. Tab, newline and CR are whitespace."""
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs")


def is_punctuation(ch: str) -> bool:
    """ASCII non-alphanumerics count as punctuation (as in BERT), plus Unicode P*."""
    cp = ord(ch)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(ch).startswith("P")


def parse_vocab(data: bytes, name: str) -> list[str]:
    """Tokens of a ``vocab.txt`` in id order, read the way BERT and Hugging Face do.

    One token per ``\\n``-separated line and the id is the line number (0-based).
    Only the line end (``\\n`` or ``\\r\\n``) is removed: nothing else is stripped,
    so a whitespace-only token such as U+2028 (line 344 of the standard Chinese
    vocab) or ``##`` + U+2028 keeps its id (``str.strip``/``splitlines`` would
    move every later id). Such tokens are never produced, since whitespace
    separates words. Empty lines at the very end are not entries (they could
    only add unreachable ids); an empty line elsewhere is an (unreachable) entry.
    This is ``transformers``' ``load_vocab``; Google's strips each line and
    ``tokenizers``' Rust reader trims its end, so there ids 343 and 13,502 of the
    standard vocab read ``''`` and ``'##'``: same ids, and never produced either.

    Raises ``ValueError`` naming ``name`` and the line for a line that is not
    UTF-8, a duplicate (the tokenizer would silently use the later id), a
    leading byte-order mark, or an empty file.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        raise ValueError(f"{name}:1: starts with a UTF-8 byte-order mark, which BERT and Hugging Face "
                         "read as part of token 0; remove it")
    lines = data.split(b"\n")
    while lines and lines[-1] in (b"", b"\r"):
        lines.pop()
    tokens: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(lines, 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            tok = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{name}:{lineno}: not UTF-8") from None
        if tok in first_line:
            raise ValueError(f"{name}:{lineno}: duplicate entry {tok!r} (first at line {first_line[tok]})")
        first_line[tok] = lineno
        tokens.append(tok)
    if not tokens:
        raise ValueError(f"{name}: vocab is empty")
    return tokens


def load_vocab(vocab_file: str) -> dict[str, int]:
    """Token -> id for a BERT ``vocab.txt`` (see ``parse_vocab``: ids are line numbers).

    Raises ``ValueError`` for a missing or unreadable file, a malformed one
    (``parse_vocab``), or a missing special token.
    """
    if not os.path.isfile(vocab_file):
        raise ValueError(f"vocab file not found: {vocab_file}")
    try:
        with open(vocab_file, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read vocab {vocab_file}: {e.strerror or e}") from None
    vocab = {tok: i for i, tok in enumerate(parse_vocab(data, vocab_file))}
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ValueError(f"vocab {vocab_file}: missing special tokens {missing}")
    return vocab


class FullTokenizer:
    """Basic + WordPiece tokenizer over a BERT vocab file."""

    def __init__(self, vocab_file: str, do_lower_case: bool = True) -> None:
        self.vocab_file = vocab_file
        self.do_lower_case = do_lower_case
        self.vocab: dict[str, int] = load_vocab(vocab_file)
        self.inv_vocab: dict[int, str] = {i: t for t, i in self.vocab.items()}
        self.pad_id = self.vocab["[PAD]"]
        self.unk_id = self.vocab["[UNK]"]
        self.cls_id = self.vocab["[CLS]"]
        self.sep_id = self.vocab["[SEP]"]
        self.mask_id = self.vocab["[MASK]"]
        self._char_cache: dict[str, tuple] = {}
        # Code point -> token id for characters that are always exactly one
        # token; else _SKIP (whitespace), _RUN (others), _UNSEEN (not yet seen).
        # 4.4 MB, built on first use (not pickled).
        self._table: np.ndarray | None = None
        self._word_cache: dict[str, list[tuple[int, int, int]]] = {}
        self._run_cache: dict[str, tuple[list[int], list[int], list[int]]] = {}

    def __len__(self) -> int:
        return len(self.vocab)

    def __getstate__(self) -> dict:
        # Caches are rebuilt on the worker; no need to ship them.
        state = self.__dict__.copy()
        state["_char_cache"] = {}
        state["_table"] = None
        state["_word_cache"] = {}
        state["_run_cache"] = {}
        return state

    # -- per-character and per-word outcomes (cached) -----------------------

    def _normalize(self, ch: str) -> str:
        if not self.do_lower_case:
            return ch
        ch = ch.lower()
        return "".join(c for c in unicodedata.normalize("NFD", ch)
                       if unicodedata.category(c) != "Mn")

    def _classify(self, ch: str) -> tuple:
        """What one input character does; see the ``_DROP`` .. ``_MIXED`` kinds."""
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or is_control(ch):
            info: tuple = (_DROP,)
        elif is_whitespace(ch) or ch.isspace():
            # BERT splits with str.split() after cleaning, so U+2028/U+2029
            # (not "whitespace" to _is_whitespace) also separate words.
            info = (_SPACE,)
        elif is_chinese_char(cp):
            # Its own word; normalisation still applies (NFD maps CJK
            # compatibility ideographs to unified ones, as BERT does).
            info = (_SINGLE, tuple(p[0] for p in self._wordpiece(self._normalize(ch))))
        else:
            norm = self._normalize(ch)
            if not norm:
                info = (_DROP,)  # e.g. a lone combining accent: removed inside the word
            elif len(norm) == 1 and is_punctuation(norm):
                info = (_SINGLE, tuple(p[0] for p in self._wordpiece(norm)))
            elif not any(is_punctuation(c) for c in norm):
                info = (_WORD, norm)
            else:
                info = (_MIXED, tuple((is_punctuation(c), c) for c in norm))
        if len(self._char_cache) >= _CHAR_CACHE_MAX:
            self._char_cache.clear()
        self._char_cache[ch] = info
        if self._table is not None:
            if info[0] == _SINGLE and len(info[1]) == 1:
                self._table[cp] = info[1][0]
            elif info[0] == _SPACE:
                self._table[cp] = _SKIP
            else:
                self._table[cp] = _RUN
        return info

    def _wordpiece(self, word: str) -> list[tuple[int, int, int]]:
        """Greedy longest-match pieces of one word: ``(id, start, end)`` in ``word``."""
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        vocab = self.vocab
        n = len(word)
        pieces: list[tuple[int, int, int]] = []
        if n > MAX_INPUT_CHARS_PER_WORD:
            pieces = [(self.unk_id, 0, n)]
        else:
            start = 0
            while start < n:
                end = n
                cur = -1
                while start < end:
                    sub = word[start:end]
                    if start > 0:
                        sub = "##" + sub
                    i = vocab.get(sub)
                    if i is not None:
                        cur = i
                        break
                    end -= 1
                if cur < 0:
                    pieces = [(self.unk_id, 0, n)]  # the whole word is [UNK]
                    break
                pieces.append((cur, start, end))
                start = end
        if len(self._word_cache) >= _WORD_CACHE_MAX:
            self._word_cache.clear()
        self._word_cache[word] = pieces
        return pieces

    # -- public API ---------------------------------------------------------

    def tokenize_with_offsets(self, text: str) -> tuple[list[int], list[int], list[int]]:
        """Token ids and each token's ``[start, end)`` character span in ``text``.

        A WordPiece piece spans the input characters its normalised characters
        came from; an ``[UNK]`` word spans the whole word.
        """
        ids, starts, ends = self.tokenize_arrays(text)
        return ids.tolist(), starts.tolist(), ends.tolist()

    def tokenize_arrays(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``tokenize_with_offsets`` as numpy int arrays (ids int32, offsets int64).

        Characters that are always exactly one token (CJK, punctuation: most of
        Chinese text) and whitespace are handled by a code-point table lookup,
        vectorised; only runs of other characters (Latin words, digits) go
        through the per-character loop, and the result is cached per run
        text. A word never spans a one-token or whitespace character, so the
        runs are independent. The per-call overhead is a few microseconds, so
        callers that care about speed tokenize a whole document at once.
        """
        table = self._table
        if table is None:
            table = self._table = np.full(0x110000, _UNSEEN, dtype=np.int32)
        # surrogatepass: a lone surrogate must not crash a job (it is a control
        # character to BERT, i.e. dropped).
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        v = table[cps]
        if cps.shape[0] and v.min() < 0:
            unseen = cps[v == _UNSEEN]
            if unseen.size:
                for cp in np.unique(unseen).tolist():
                    self._classify(chr(cp))
                v = table[cps]
            gaps = np.flatnonzero(v == _RUN)
        else:
            gaps = None
        pos = np.flatnonzero(v >= 0)
        if gaps is None or not gaps.size:
            return v[pos], pos, pos + 1
        # Maximal runs of _RUN characters: [run_a[k], run_b[k]).
        brk = np.flatnonzero(np.diff(gaps) != 1)
        run_a = gaps[np.concatenate(([0], brk + 1))]
        run_b = gaps[np.concatenate((brk, [gaps.size - 1]))] + 1
        cache = self._run_cache
        rid: list[int] = []
        rx: list[int] = []
        ry: list[int] = []
        counts: list[int] = []
        for a, b in zip(run_a.tolist(), run_b.tolist()):
            run = text[a:b]
            ent = cache.get(run)
            if ent is None:
                pieces = self._tokenize_run(run)
                ent = ([p[0] for p in pieces], [p[1] for p in pieces], [p[2] for p in pieces])
                if len(cache) >= _RUN_CACHE_MAX:
                    cache.clear()
                cache[run] = ent
            rid += ent[0]
            rx += ent[1]
            ry += ent[2]
            counts.append(len(ent[0]))
        if not rid:
            return v[pos], pos, pos + 1
        off = np.repeat(run_a, counts)
        starts = np.concatenate((pos, off + np.asarray(rx, dtype=np.int64)))
        ends = np.concatenate((pos + 1, off + np.asarray(ry, dtype=np.int64)))
        ids = np.concatenate((v[pos], np.asarray(rid, dtype=np.int32)))
        # Singles and run tokens never share a start; tokens of one character
        # that share a start stay in order (stable sort).
        order = np.argsort(starts, kind="stable")
        return ids[order], starts[order], ends[order]

    def _tokenize_run(self, run: str) -> list[tuple[int, int, int]]:
        """The general per-character loop: ``(id, start, end)`` within ``run``."""
        out: list[tuple[int, int, int]] = []
        cache = self._char_cache
        word: list[str] = []   # normalised characters of the current word
        src: list[int] = []    # index in ``run`` of each normalised character

        def flush() -> None:
            for pid, x, y in self._wordpiece("".join(word)):
                out.append((pid, src[x], src[y - 1] + 1))
            word.clear()
            src.clear()

        for i, ch in enumerate(run):
            info = cache.get(ch)
            if info is None:
                info = self._classify(ch)
            kind = info[0]
            if kind == _SINGLE:
                if word:
                    flush()
                for pid in info[1]:
                    out.append((pid, i, i + 1))
            elif kind == _WORD:
                for c in info[1]:
                    word.append(c)
                    src.append(i)
            elif kind == _SPACE:
                if word:
                    flush()
            elif kind == _MIXED:
                for is_p, c in info[1]:
                    if is_p:
                        if word:
                            flush()
                        for pid, _, _ in self._wordpiece(c):
                            out.append((pid, i, i + 1))
                    else:
                        word.append(c)
                        src.append(i)
            # _DROP: nothing, and the current word continues
        if word:
            flush()
        return out

    def tokenize_ids(self, text: str) -> list[int]:
        return self.tokenize_with_offsets(text)[0]

    def tokenize(self, text: str) -> list[str]:
        inv = self.inv_vocab
        return [inv[i] for i in self.tokenize_with_offsets(text)[0]]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Vocab ids; a token not in the vocab maps to ``[UNK]``'s id."""
        get = self.vocab.get
        unk = self.unk_id
        return [get(t, unk) for t in tokens]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        """Tokens for ids; raises ``KeyError`` for an id outside the vocab."""
        inv = self.inv_vocab
        return [inv[i] for i in ids]
