"""Stage ``segment``: word starts of every document, one file per docs shard.

``stages/segment/words-i-of-N.words`` holds, for document i of docs shard i, its
id hash, offset count and a bitmap of word starts
(``corpusflow.segment.starts_file``); the instances stage reads it in step with
the docs.
"""

from __future__ import annotations

import collections
import gc
import uuid
from typing import Iterable, Iterator, Optional

import apache_beam as beam

from corpusflow import counters
from corpusflow.document import Document, stable_hash64
from corpusflow.segment.registry import SegmentConfig, check_in_driver, make_from_config
from pipelines.beam_io import BEAM
from pipelines.beam_util import BeamInc, iter_json_lines
from pipelines.progress import Progress
from pipelines.stages.base import (Ctx, Stage, clear_prefix, collect, docs_paths, pipeline,
                                   progress_opts, side_outputs)
from pipelines.stages.common import STATS, bucket, histograms_output

counters.register(["segment:docs", "segment:sentences", "segment:chars",
                   "segment:fallback:sentence"])


class SegmentDocs(beam.DoFn):
    """``(shard index, docs shard path)`` -> that shard's word-starts file.

    The file (``corpusflow.segment.starts_file``) is written under a temp name;
    the main output ``(index, (temp path, records))`` goes to ``FinishWords``,
    which renames the one a committed bundle reported, so a retried bundle
    never leaves a half-written or duplicate file under the final name.
    """

    def __init__(self, prefix: str, num_shards: int, config: SegmentConfig,
                 progress: Optional[dict] = None):
        self.prefix = prefix
        self.num_shards = num_shards
        self.config = config
        self.block_sentences = config.segment_block_sentences
        self.progress = progress or {}

    def setup(self) -> None:
        self.segmenter = make_from_config(self.config, BEAM)
        self.segmenter.setup()
        self.inc = BeamInc()
        self.meter = Progress("segment", "docs", **self.progress)
        # The dictionaries and model just loaded live as long as the worker: keep
        # them out of the cyclic GC's full scans.
        gc.freeze()

    def start_bundle(self) -> None:
        self.stats: dict = {"sentence_chars": collections.Counter()}
        # Time inside the segmenter calls (Segmenter.starts_for_block adds to
        # it), for the segment-speed benchmark (bench/segment_check.py compares
        # it with direct calls). cpu_seconds is this thread's CPU (a neural
        # model's intra-op threads are not in it: compare those by wall_seconds).
        self.seg_time = {"cpu_seconds": 0.0, "wall_seconds": 0.0, "chars": 0, "sentences": 0,
                         "calls": 0}

    def process(self, element: tuple[int, str]):
        from corpusflow.segment import starts_file
        from pipelines.integrity import Crc32cWriter
        from pipelines.sharded_write import open_write, shard_name
        index, path = element
        tmp = f"{shard_name(self.prefix, index, self.num_shards, '.words')}.tmp-{uuid.uuid4().hex}"
        n = 0
        with Crc32cWriter(open_write(tmp)) as f:
            starts_file.write_header(f)
            for block in sentence_blocks(iter_json_lines(path), self.block_sentences):
                # One call per block of ~block_sentences sentences (keeps a model
                # cache-warm; the backend picks its fast path or spans per
                # document; a sentence's words do not depend on its batch).
                all_starts = self.segmenter.starts_for_block(
                    [sentences for _, sentences in block], self.inc, self.seg_time)
                for (doc, sentences), starts in zip(block, all_starts):
                    self._count(sentences)
                    n_offsets = sum(map(len, sentences)) + len(sentences)
                    f.write(starts_file.encode(stable_hash64(doc.id), n_offsets, starts))
                    n += 1
        yield index, (tmp, n, f.hexdigest)

    def _count(self, sentences: list) -> None:
        """Counters, histograms, timing totals and progress of one document."""
        n_chars = sum(map(len, sentences))
        self.inc("segment:docs")
        self.inc("segment:sentences", len(sentences))
        self.inc("segment:chars", n_chars)
        self.stats["sentence_chars"].update(map(bucket, map(len, sentences)))
        self.seg_time["chars"] += n_chars
        self.seg_time["sentences"] += len(sentences)
        self.meter.add()

    def finish_bundle(self):
        yield histograms_output(self.stats, segment_time=dict(self.seg_time))


class FinishWords(beam.DoFn):
    """``(index, [(temp path, records), ...])`` -> the final word-starts file's info."""

    def __init__(self, prefix: str, num_shards: int):
        self.prefix = prefix
        self.num_shards = num_shards

    def process(self, element):
        import os
        from pipelines.sharded_write import install, shard_name
        index, written = element
        tmp, n, crc = sorted(written)[0]   # one per committed bundle: normally exactly one
        final = shard_name(self.prefix, index, self.num_shards, ".words")
        yield {"shard": index, "file": os.path.basename(final), "count": n,
               "bytes": install(tmp, final), "crc32c": crc}


def sentence_blocks(records: Iterable[dict], block_sentences: int) -> Iterator[list]:
    """``[(Document, sentences), ...]`` blocks of whole documents, in order, each
    closed once it holds ``block_sentences`` sentences or more."""
    from corpusflow.clean.sentences import split_sentences
    block: list = []
    n = 0
    for d in records:
        doc = Document.from_json(d)
        sentences = split_sentences(doc.text)
        block.append((doc, sentences))
        n += len(sentences)
        if n >= block_sentences:
            yield block
            block, n = [], 0
    if block:
        yield block


def run(ctx: Ctx) -> dict:
    """Docs shard i -> ``stages/segment/words-i-of-N.words``."""
    n = ctx.b.num_doc_shards
    prefix = f"{ctx.out}/stages/segment/words"
    p = pipeline(ctx)
    res = (p | "DocFiles" >> beam.Create(list(enumerate(docs_paths(ctx))))
           | "SpreadFiles" >> beam.Reshuffle()
           | "Segment" >> beam.ParDo(SegmentDocs(prefix, n, ctx.config(SegmentConfig),
                                                 progress=progress_opts(ctx)))
           .with_outputs(STATS, main="written"))
    infos = (res.written | "GroupWritten" >> beam.GroupByKey()
             | "FinishWords" >> beam.ParDo(FinishWords(prefix, n)))
    side_outputs(ctx, STAGE, infos, res[STATS])
    r = collect(ctx, p, STAGE, [])
    if r:
        clear_prefix(f"{prefix}-*.tmp-*")  # written by bundles that were retried
    return r


def identity(ctx: Ctx) -> dict:
    """The segmenter's name, version and model/dictionary hash, checked in the driver."""
    from pipelines.errors import BuildError
    cfg = ctx.config(SegmentConfig)
    try:
        return check_in_driver(cfg, BEAM)
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise BuildError(f"--segmenter {cfg.segmenter}: {e}") from e


STAGE = Stage(
    name="segment", configs=(SegmentConfig,), output_dir="stages/segment",
    outputs=("stages/segment/words-*",), run=run, identity=identity,
    manifest=lambda ctx, counters: {"segmenter": ctx.facts["segment"]},
    describe=lambda ctx: f"{ctx.b.num_doc_shards} docs shard(s)")
