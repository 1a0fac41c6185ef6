"""Counters: one closed vocabulary, injected as a function.

Core functions take ``inc: Inc`` (``inc(name, n=1)``) instead of importing Beam,
as TFDS's C4 cleaning does; the Beam stage passes a function that bumps a Beam
``Metrics.counter`` and tests pass a ``CounterDict`` and assert the exact dict.

Names are ``stage:kind:reason`` (e.g. ``clean:filtered:too_short``). Each module
declares the names it may use with ``register``; ``CounterDict`` refuses names
nobody declared, so a typo fails a test instead of silently making a new counter.
"""

from __future__ import annotations

import collections
from typing import Callable, Iterable

Inc = Callable[..., None]

_VOCAB: set[str] = set()


def register(names: Iterable[str]) -> tuple[str, ...]:
    """Declare counter names; returns them so a module can keep the tuple."""
    names = tuple(names)
    for n in names:
        if n.count(":") < 1:
            raise ValueError(f"counter name must be stage:kind[:reason], got {n!r}")
    _VOCAB.update(names)
    return names


def vocabulary() -> frozenset[str]:
    return frozenset(_VOCAB)


def check(name: str) -> str:
    if name not in _VOCAB:
        raise KeyError(f"counter {name!r} is not in the vocabulary; register() it")
    return name


class CounterDict(collections.Counter):
    """A counter sink for tests and local aggregation; validates names."""

    def __call__(self, name: str, n: int = 1) -> None:
        self[check(name)] += n

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in sorted(self.items()) if v}


def null_inc(name: str, n: int = 1) -> None:
    """An ``Inc`` that only validates (for callers that do not count)."""
    check(name)
