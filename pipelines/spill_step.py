"""Steps that hand each other sorted run files instead of records (near dedup, CC).

A ``SpillStep`` DoFn writes its records to sorted runs (``sharded_write.Spill``:
one run per key-range bucket per flush) and outputs only the runs' names as
``(bucket, (path, count))``. The next step groups those names by bucket
(``grouped``), k-way merges one bucket's runs (``merged_runs``) and reads each
key's records together (``by_node``). What a step holds is one key's records,
so memory is flat in input size on any runner: records never cross a stage
boundary, which the local runner would buffer whole.

Records are ``esc(key) + rest``: ``esc`` keeps byte order and is never a prefix
of another encoding, so a merge in byte order yields each key's records
together, in key order, and fields can follow the key.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Iterable, Iterator

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from corpusflow.dedup import minhash as mh
from pipelines.beam_util import BeamInc
from pipelines.sharded_write import Spill, merge_runs

# Key-range buckets of every run file (one merge per bucket and step).
NUM_BUCKETS = 16
SPILL_BYTES = 16 << 20

#: Ends an escaped field.
END = b"\x00\x00"


def esc(b: bytes) -> bytes:
    """NUL -> NUL 0x01, then NUL NUL: byte order is the order of the inputs, and
    no encoding is a prefix of another, so fields can follow it."""
    return b.replace(b"\x00", b"\x00\x01") + END


def unesc(data: bytes, start: int = 0) -> tuple[bytes, int]:
    """The field escaped at ``data[start:]`` and the offset just after it."""
    end = data.index(END, start)
    return data[start:end].replace(b"\x00\x01", b"\x00"), end + 2


def h64(b: bytes) -> int:
    """Sort key of a band key or node: spreads them over the key-range buckets."""
    return int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "big")


def merged_runs(element) -> Iterator[bytes]:
    """Payloads of one bucket's runs ``(bucket, [(path, count, ...), ...])``, merged."""
    _, runs = element
    for _, payload in merge_runs(sorted(r[0] for r in runs)):
        yield payload


def by_node(payloads: Iterable[bytes]) -> Iterator[tuple[bytes, Iterator[bytes]]]:
    """``esc(node) + rest`` records -> ``(node, rests)`` per node, in order."""
    def split(p: bytes) -> tuple[bytes, bytes]:
        node, i = unesc(p)
        return node, p[i:]
    for node, group in itertools.groupby(map(split, payloads), key=lambda t: t[0]):
        yield node, (rest for _, rest in group)


def grouped(runs, label: str):
    """Run files by bucket: each bucket is merged by one DoFn call."""
    return runs | label >> beam.GroupByKey()


class SpillStep(beam.DoFn):
    """A step whose records go to sorted runs, never to elements.

    ``outputs``: tag -> run directory; the tag ``"main"`` is the main output.
    Each output PCollection holds ``(bucket, (path, count))`` per run file.
    Subclasses implement ``handle(element)`` as a generator that calls ``emit``.
    """

    def __init__(self, outputs: dict[str, str], num_buckets: int, spill_bytes: int) -> None:
        self._dirs = outputs
        self._num_buckets = num_buckets
        self._spill_bytes = spill_bytes

    def setup(self) -> None:
        self.inc = BeamInc()

    def start_bundle(self) -> None:
        self._spills = {tag: Spill(d, self._num_buckets, self._spill_bytes)
                        for tag, d in self._dirs.items()}
        for sp in self._spills.values():
            sp.start_bundle()
        self._pending: list = []

    def emit(self, tag: str, key: int, payload: bytes) -> None:
        for run in self._spills[tag].process((key, payload)):
            self._pending.append(run if tag == "main" else TaggedOutput(tag, run))

    def emit_edge(self, a: mh.Node, b: mh.Node) -> None:
        """An edge as adjacency records both ways, grouped by node in the next step."""
        self.emit("main", h64(a), esc(a) + b)
        self.emit("main", h64(b), esc(b) + a)

    def process(self, element):
        yield from self.handle(element)
        pending, self._pending = self._pending, []
        yield from pending

    def handle(self, element) -> Iterator:
        """The step itself, defined by every subclass: yield outputs and call ``emit`` for spilled records."""
        raise NotImplementedError

    def finish_bundle(self):
        for tag, sp in self._spills.items():
            for w in sp.finish_bundle():
                yield w if tag == "main" else TaggedOutput(tag, w)
