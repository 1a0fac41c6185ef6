"""What every stage's DoFns share: tagged outputs, per-bundle stats, record keys."""

from __future__ import annotations

from typing import Any

from apache_beam import pvalue

from corpusflow.document import stable_hash64
from pipelines.beam_util import dumps

REJECTS = "rejects"
STATS = "stats"


class StageStats:
    """Per-bundle statistics a DoFn emits once (tagged ``stats``) for stats.json.

    Docs and characters per source in and out, reasons, and log2 length
    histograms; merged across bundles by ``beam_util.MergeStatsFn``.
    """

    def __init__(self) -> None:
        self.data: dict = {"docs_in": {}, "chars_in": {}, "docs_out": {}, "chars_out": {},
                           "reasons": {}, "doc_chars_hist": {}}

    @staticmethod
    def _add(d: dict, k, n: int = 1) -> None:
        d[k] = d.get(k, 0) + n

    def doc_in(self, source: str, text: str) -> None:
        self._add(self.data["docs_in"], source)
        self._add(self.data["chars_in"], source, len(text))

    def doc_out(self, source: str, text: str) -> None:
        self._add(self.data["docs_out"], source)
        self._add(self.data["chars_out"], source, len(text))
        self._add(self.data["doc_chars_hist"], str(log2_bucket(len(text))))

    def reason(self, stage: str, reason: str) -> None:
        self._add(self.data["reasons"], f"{stage}:{reason}")

    def edit_inc(self, inc: Any) -> Any:
        """``inc`` that also keeps line-level edits (``clean:edited:*``: junk
        lines, punctuation runs) under ``edits`` for stats.json."""
        edits = self.data.setdefault("edits", {})

        def tee(name: str, n: int = 1) -> None:
            inc(name, n)
            if name.startswith("clean:edited:"):
                edits[name] = edits.get(name, 0) + n
        return tee

    def emit(self):
        from apache_beam.transforms.window import GlobalWindows
        return pvalue.TaggedOutput(STATS, GlobalWindows.windowed_value(self.data))


def log2_bucket(n: int) -> int:
    """Histogram bucket: the largest power of two <= n (0 for 0)."""
    return 1 << (n.bit_length() - 1) if n > 0 else 0


def keyed_doc(d: dict) -> tuple[int, bytes]:
    """Docs are ordered (and sharded) by a hash of their id."""
    return stable_hash64(d["id"]), dumps(d)


def keyed_reject(r: dict) -> tuple[int, bytes]:
    b = dumps(r)
    return stable_hash64(b), b


def histograms_output(hists: dict, **extra: Any):
    """A bundle's Counter histograms (keys as strings, for JSON) as its ``stats`` output."""
    from apache_beam.transforms.window import GlobalWindows
    stats: dict = {k: {str(a): b for a, b in v.items()} for k, v in hists.items()}
    stats.update(extra)
    return pvalue.TaggedOutput(STATS, GlobalWindows.windowed_value(stats))


def bucket(n: int, width: int = 10) -> int:
    return (n // width) * width


def local_copy(path: str) -> str:
    """Vocab files may live on GCS: copy once per worker to a local temp file."""
    if "://" not in path:
        return path
    import tempfile
    from apache_beam.io.filesystems import FileSystems
    fd, local = tempfile.mkstemp(suffix=".txt")
    with FileSystems.open(path) as src, open(fd, "wb") as dst:
        dst.write(src.read())
    return local
