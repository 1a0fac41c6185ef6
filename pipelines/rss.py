"""Peak resident memory of a stage: this process and every process it started.

``ru_maxrss`` only ever grows over a whole run and counts one process, so it
cannot say which stage grew or what the SDK worker processes of a
multi-processing run held. A daemon thread samples ``/proc`` instead.
"""

from __future__ import annotations

import os
import resource
import threading
from typing import Optional

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            pass
    return out


def tree_rss(pid: Optional[int] = None) -> tuple[int, int]:
    """(RSS of ``pid`` alone, largest RSS of any one process in its tree), in bytes."""
    pid = pid or os.getpid()
    own = _rss_bytes(pid)
    largest, todo = own, _children(pid)
    while todo:
        c = todo.pop()
        largest = max(largest, _rss_bytes(c))
        todo.extend(_children(c))
    return own, largest


class PeakRss:
    """``with PeakRss() as p: ...``; then ``p.peak_mb``: the largest process of the tree.

    Falls back to ``ru_maxrss`` (a run-long maximum) where ``/proc`` is missing.
    """

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _sample(self) -> None:
        self.peak = max(self.peak, tree_rss()[1])

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "PeakRss":
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="corpusflow-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        if not self.peak:  # no /proc: the best this platform offers
            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)
