"""Build and audit vocabularies from the cleaned corpus.

``python -m vocab.build`` samples sentences and writes a BERT ``vocab.txt`` and/or
a sentencepiece model plus ``audit.json``; ``python -m vocab.audit`` measures
any vocab against documents. Library API: ``build_vocab``, ``audit_vocab``,
``load_vocab`` (resolved lazily so ``python -m vocab.build`` does not import its
own module twice).
"""

from __future__ import annotations

from typing import Any

_API = {"build_vocab": "vocab.build", "audit_vocab": "vocab.audit", "load_vocab": "vocab.audit"}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'vocab' has no attribute {name!r}")
