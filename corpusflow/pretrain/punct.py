"""Which vocab tokens are punctuation, and which mark a clause boundary.

Used by ``pairs`` (where a one-sentence chunk may be cut in two) and by
``instances`` (an instance made mostly of punctuation is dropped), and by
``bench/instance_quality.py`` to measure both on built TFRecords.
"""

from __future__ import annotations

import unicodedata
from typing import Mapping

# Clause punctuation of Chinese text: a one-sentence chunk is cut right after
# one of these (full-width only: ASCII "," and ":" also sit inside numbers and
# times, "3,000", "10:30").
CLAUSE_PUNCT = "，；：、"


def is_punct_token(token: str) -> bool:
    """True for a token made only of punctuation or symbols (Unicode P*, S*).

    A ``##`` continuation is judged by what follows the prefix; special tokens
    (``[CLS]``, ``[UNK]``, ...) and empty tokens are not punctuation.
    """
    if token.startswith("[") and token.endswith("]") and len(token) > 2:
        return False
    body = token[2:] if token.startswith("##") else token
    return bool(body) and all(unicodedata.category(c)[0] in "PS" for c in body)


def punct_ids(vocab: Mapping[str, int]) -> frozenset[int]:
    """Ids of the punctuation/symbol tokens of ``vocab``."""
    return frozenset(i for t, i in vocab.items() if is_punct_token(t))


def clause_ids(vocab: Mapping[str, int]) -> frozenset[int]:
    """Ids of the clause punctuation tokens (``CLAUSE_PUNCT``) present in ``vocab``."""
    return frozenset(vocab[c] for c in CLAUSE_PUNCT if c in vocab)
