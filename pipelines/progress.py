"""Progress lines (count, rate, ETA) from inside DoFns during long local runs.

Each worker process prints its own share at most every ``every`` seconds; the
ETA assumes this worker's share of ``total`` is ``total / workers``.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, stage: str, unit: str, total: int = 0, workers: int = 1,
                 every: float = 10.0, enabled: bool = True):
        self.stage = stage
        self.unit = unit
        self.total = max(0, total) / max(1, workers)
        self.every = every
        self.enabled = enabled
        self.done = 0
        self.start = time.time()
        self.last = self.start

    def add(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.time()
        if now - self.last >= self.every:
            self.last = now
            print(self.line(now), file=sys.stderr, flush=True)

    def line(self, now: float | None = None) -> str:
        now = now or time.time()
        rate = self.done / max(1e-9, now - self.start)
        msg = f"[corpusflow {self.stage}] {self.done:,} {self.unit} ({rate:,.0f}/s)"
        if self.total and rate > 0:
            left = max(0.0, self.total - self.done) / rate
            msg += f", ~{min(100.0, 100.0 * self.done / self.total):.0f}% of this worker's share, ETA {_fmt(left)}"
        return msg


def _fmt(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
