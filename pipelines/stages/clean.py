"""Stage ``clean``: every input file read, normalised and filtered -> ``stages/clean/docs-*``."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import apache_beam as beam
from apache_beam import pvalue

from corpusflow.clean.cleaner import CLEAN_OPTION_CLASSES, CleanConfig
from corpusflow.config import Config, option
from corpusflow.document import Reject
from corpusflow.io.formats import FORMATS
from corpusflow.quality.step import add_stats as add_quality_stats
from pipelines import integrity
from pipelines.beam_io import BEAM
from pipelines.beam_util import BeamInc
from pipelines.progress import Progress
from pipelines.sharded_write import ShardedWrite
from pipelines.stages.base import Ctx, Stage, collect, pipeline, side_outputs
from pipelines.stages.common import REJECTS, STATS, StageStats, keyed_doc


@dataclasses.dataclass(frozen=True)
class ReadConfig(Config):
    """How input files are read (hashed by the clean stage)."""

    GROUP = "corpusflow: input and output"

    input_format: str = option("auto", "Format of every input file; auto detects it per file.",
                               choices=("auto",) + FORMATS)
    input_encoding: str = option("auto", "Text encoding; auto tells UTF-8 from GB18030 per file.",
                                 choices=("utf-8", "gb18030", "auto"))
    max_record_mb: float = option(16.0, "Records (lines) larger than this are rejected, never "
                                        "loaded.", lo=0.0, lo_open=True)


class ReadAndClean(beam.DoFn):
    """One input file -> cleaned documents (main) and rejects (tagged)."""

    def __init__(self, fmt: str, encoding: str, clean_config: Any, max_record_bytes: int,
                 progress: Optional[dict] = None):
        self.fmt = fmt
        self.encoding = encoding
        self.clean_config = clean_config
        self.max_record_bytes = max_record_bytes
        self.progress = progress or {}

    def setup(self) -> None:
        from corpusflow.clean.cleaner import Cleaner
        self.cleaner = Cleaner(self.clean_config, BEAM)
        self.cleaner.setup()
        self.inc = BeamInc()
        self.meter = Progress("clean", "docs", **self.progress)

    def start_bundle(self) -> None:
        self.stats = StageStats()
        self.clean_inc = self.stats.edit_inc(self.inc)
        from corpusflow.pii.step import stats_inc
        self.clean_inc = stats_inc(self.stats.data, self.clean_inc)  # clean:pii:* -> stats "pii"

    def process(self, path: str):
        from corpusflow.io.readers import read_file
        st = self.stats
        for rec in read_file(path, fmt=self.fmt, encoding=self.encoding, inc=self.inc,
                             max_record_bytes=self.max_record_bytes, opener=BEAM):
            self.meter.add()
            if isinstance(rec, Reject):
                st.reason("read", rec.reason)
                yield pvalue.TaggedOutput(REJECTS, rec.to_json())
                continue
            st.doc_in(rec.source, rec.text)
            out = self.cleaner.clean(rec, self.clean_inc)
            if isinstance(out, Reject):
                st.reason("clean", out.reason)
                yield pvalue.TaggedOutput(REJECTS, out.to_json())
            else:
                st.doc_out(out.source, out.text)
                add_quality_stats(st.data, out.source, out.meta)
                yield out.to_json()

    def finish_bundle(self):
        yield self.stats.emit()


def run(ctx: Ctx) -> dict:
    b = ctx.b
    read = ctx.config(ReadConfig)
    p = pipeline(ctx)
    res = (p | "InputFiles" >> beam.Create([f["path"] for f in ctx.files])
           | "SpreadFiles" >> beam.Reshuffle()
           | "ReadAndClean" >> beam.ParDo(ReadAndClean(
               read.input_format, read.input_encoding, ctx.config(CleanConfig),
               int(read.max_record_mb * 2**20), progress={"total": 0, "enabled": b.progress}))
           .with_outputs(REJECTS, STATS, main="docs"))
    infos = (res.docs | "KeyDocs" >> beam.Map(keyed_doc)
             | "WriteDocs" >> ShardedWrite(f"{ctx.out}/stages/clean/docs", b.num_doc_shards,
                                           fmt="jsonl", gzip_output=True))
    side_outputs(ctx, STAGE, infos, res[STATS], res[REJECTS])
    return collect(ctx, p, STAGE, [f"{ctx.out}/stages/clean/_tmp-docs"])


def identity(ctx: Ctx) -> dict:
    """Input paths and sizes, and the quality model's bytes (not only its path).

    An edited input with the same size is caught by its fingerprint
    (``check_reuse``), which names what changed.
    """
    facts: dict[str, Any] = {"inputs": [{"path": f["path"], "size": f["size"]}
                                        for f in ctx.files]}
    model = ctx.config(CleanConfig).quality_model
    if model:
        from corpusflow.quality.model import model_digest
        facts["quality_model_digest"] = model_digest(model, BEAM)
    return facts


def check_reuse(ctx: Ctx, m: dict) -> str:
    """Why the inputs no longer match their recorded fingerprints ("" if they do)."""
    old = {f["path"]: f for f in m.get("input_fingerprints", [])}
    if not old:
        return ""  # recorded by an older version: the config hash covers paths and sizes
    for f in ctx.files:
        changes = integrity.fingerprint_changes(old.get(f["path"], {}), f)
        if changes:
            return f"input {f['path']} changed since it was cleaned ({', '.join(changes)})"
    return ""


def record(ctx: Ctx, r: dict) -> None:
    r["input_fingerprints"] = ctx.files


STAGE = Stage(
    name="clean", configs=(ReadConfig,) + tuple(CLEAN_OPTION_CLASSES),
    output_dir="stages/clean", outputs=("stages/clean/docs-*", "rejects/clean-*"),
    rejects="clean", run=run, identity=identity, check_reuse=check_reuse, record=record,
    describe=lambda ctx: f"{len(ctx.files)} input file(s)")
