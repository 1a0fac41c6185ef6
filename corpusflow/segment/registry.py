"""Segmenters by name: ``make_segmenter("jieba" | "ltp" | "jieba_rs", **options)``.

Backends are imported only when asked for, so choosing jieba never imports
LTP (or torch), and the perceptron LTP path never imports jieba.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from corpusflow.segment.base import Segmenter

# name -> (module, class)
_BACKENDS: dict[str, tuple[str, str]] = {
    "jieba": ("corpusflow.segment.jieba_backend", "JiebaSegmenter"),
    "ltp": ("corpusflow.segment.ltp_backend", "LTPSegmenter"),
    "jieba_rs": ("corpusflow.segment.jieba_rs_backend", "JiebaRsSegmenter"),
}
SEGMENTERS: tuple[str, ...] = tuple(_BACKENDS)

# Pipeline flag names that map onto constructor arguments.
_ALIASES = {"ltp": {"ltp_model": "model_dir"}}


def _backend_class(name: str) -> type:
    if name not in _BACKENDS:
        raise ValueError(f"unknown segmenter {name!r}; choose one of: {', '.join(SEGMENTERS)}")
    module, cls = _BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def segmenter_options(name: str) -> tuple[str, ...]:
    """Option names ``make_segmenter(name, ...)`` accepts (aliases included)."""
    own = tuple(inspect.signature(_backend_class(name)).parameters)
    return own + tuple(_ALIASES.get(name, {}))


def make_segmenter(name: str, **options: Any) -> Segmenter:
    """A segmenter by name; options are its constructor's arguments.

    Options whose value is None are dropped, so a caller can pass every flag it
    has (``user_dict=args.user_dict, ltp_model=args.ltp_model``) and only the
    ones set reach the backend; a set option the backend does not take is an
    error. For ``ltp``, ``ltp_model`` is accepted for ``model_dir``.
    The result is not loaded yet: call ``validate()`` (LTP) before starting a
    pipeline and ``setup()`` in each worker.
    """
    cls = _backend_class(name)
    opts = {k: v for k, v in options.items() if v is not None}
    for alias, real in _ALIASES.get(name, {}).items():
        if alias in opts:
            if real in opts:
                raise ValueError(f"segmenter {name!r}: give {alias!r} or {real!r}, not both")
            opts[real] = opts.pop(alias)
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(opts) - accepted)
    if unknown:
        raise ValueError(f"segmenter {name!r} does not take option(s) {', '.join(unknown)}; "
                         f"it takes: {', '.join(sorted(accepted))}")
    if name == "ltp" and "model_dir" not in opts:
        raise ValueError("segmenter 'ltp' needs a model directory: --ltp_model DIR "
                         "(train one with `python -m corpusflow.segment.train`)")
    return cls(**opts)
