"""jieba-rs (Rust port of jieba, via ``rjieba``) behind the ``Segmenter`` interface.

Same dictionary and algorithm family as jieba, about 20x faster (6M vs 0.3M
chars/s measured here). Its word boundaries are a subset of Python jieba's
(boundary precision 1.0, recall 0.997 on THUCNews text), so whole-word masking
groups are nearly identical; it is a separate name, not a silent swap, because
output bytes must not depend on which packages happen to be installed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from typing import Optional, Sequence

from corpusflow.segment.base import Segmenter, Span


class JiebaRsSegmenter(Segmenter):
    name = "jieba_rs"

    def __init__(self, user_dict: Optional[str] = None, hmm: bool = True) -> None:
        super().__init__()
        self.user_dict = user_dict
        self.hmm = hmm
        self._jieba = None

    def validate(self) -> None:
        try:
            import rjieba  # noqa: F401
        except ImportError as e:
            raise ImportError("--segmenter jieba_rs needs the rjieba package: pip install rjieba") from e
        if self.user_dict:
            with open(self.user_dict, encoding="utf-8"):
                pass

    def setup(self) -> None:
        if self._jieba is not None:
            return
        self.validate()
        import rjieba
        j = rjieba.Jieba()
        if self.user_dict:
            # jieba's user-dict format: "word [freq] [tag]" per line.
            with open(self.user_dict, encoding="utf-8") as f:
                for line in f:
                    parts = line.split()
                    if not parts:
                        continue
                    freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
                    tag = parts[2] if len(parts) > 2 else None
                    j.add_word(parts[0], freq, tag)
        self._jieba = j

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_jieba"] = None  # the Rust object is not picklable; setup() rebuilds it
        return state

    def _segment_batch(self, sentences: Sequence[str]) -> list[list[Span]]:
        if self._jieba is None:
            self.setup()
        out: list[list[Span]] = []
        cut = self._jieba.cut
        for s in sentences:
            spans: list[Span] = []
            pos = 0
            for w in cut(s, self.hmm):
                spans.append((pos, pos + len(w)))
                pos += len(w)
            if pos != len(s):  # never expected; keep the interface's coverage rule
                raise ValueError("jieba-rs words do not cover the sentence")
            out.append(spans)
        return out

    def identity(self) -> dict:
        h = hashlib.sha256(b"rjieba-embedded-dict")
        if self.user_dict:
            with open(self.user_dict, "rb") as f:
                h.update(f.read())
        return {"name": self.name, "version": f"rjieba=={importlib.metadata.version('rjieba')}",
                "model_hash": h.hexdigest(), "hmm": self.hmm}
