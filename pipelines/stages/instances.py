"""Stage ``instances``: docs + word starts -> masked pretraining examples, spilled as
sorted runs in ``stages/instances/runs`` (the tfrecords stage merges them)."""

from __future__ import annotations

import collections
import gc
import posixpath
from typing import Any, Optional

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from corpusflow import counters
from corpusflow.document import Document, Reject, stable_hash64
from corpusflow.pretrain.instances import InstanceConfig
from pipelines import integrity
from pipelines.beam_util import BeamInc, iter_json_lines
from pipelines.errors import BuildError
from pipelines.progress import Progress
from pipelines.sharded_write import spill_runs
from pipelines.stages.base import (Ctx, Stage, collect, docs_paths, match, pipeline,
                                   progress_opts, side_outputs, stage_files)
from pipelines.stages.common import REJECTS, STATS, histograms_output, local_copy

counters.register(["pretrain:docs", "pretrain:sentences", "pretrain:chars",
                   "pretrain:instances"])

# Key buckets of the runs: the merge's parallelism in the tfrecords stage.
# Output bytes do not depend on it, so it is not in any hash.
INSTANCE_BUCKETS = 32


def runs_dir(out: str) -> str:
    return f"{out}/stages/instances/runs"


def has_vocab(b: Any) -> bool:
    return bool(b.vocab_file) and str(b.vocab_file).lower() != "none"


def vocab_info(b: Any) -> Optional[dict]:
    """Path, content hash and size of ``--vocab_file``; None for 'none'."""
    if not has_vocab(b):
        return None
    if not FileSystems.exists(b.vocab_file):
        raise BuildError(f"--vocab_file {b.vocab_file!r} does not exist")
    from corpusflow.tokenize.wordpiece import FullTokenizer
    try:
        tok = FullTokenizer(local_copy(b.vocab_file), do_lower_case=b.do_lower_case)
    except ValueError as e:
        raise BuildError(f"--vocab_file {b.vocab_file!r}: {e}") from e
    return {"path": b.vocab_file, "sha256": integrity.file_sha256(b.vocab_file),
            "size": len(tok.vocab)}


class BuildInstances(beam.DoFn):
    """``(index, docs shard, word-starts file)`` -> serialized tf.train.Examples
    keyed by shuffle key.

    The whole shard is one unit of work so the NSP negative window (the last
    ``nsp_window`` documents of the same shard) is identical on every runner.
    Words come from the segment stage's file, read in step with the docs; the
    dupe passes reuse the prepared doc.
    """

    def __init__(self, instance_config: InstanceConfig, progress: Optional[dict] = None):
        self.instance_config = instance_config
        self.vocab_file = instance_config.vocab_file
        self.do_lower_case = instance_config.do_lower_case
        self.nsp_window = instance_config.nsp_window
        self.progress = progress or {}

    def setup(self) -> None:
        from corpusflow.pretrain.instances import InstanceBuilder
        from corpusflow.tokenize.wordpiece import FullTokenizer
        local_vocab = local_copy(self.vocab_file)
        self.tokenizer = FullTokenizer(local_vocab, do_lower_case=self.do_lower_case)
        self.builder = InstanceBuilder(self.instance_config, self.tokenizer)
        self.unk_id = self.tokenizer.vocab["[UNK]"]
        self.inc = BeamInc()
        self.meter = Progress("instances", "docs", **self.progress)
        # The vocab just loaded lives as long as the worker: take it out of the
        # cyclic GC's full scans, which the per-document allocations here
        # trigger often (measured: 20% of the exact-jieba stage at 20 MB).
        gc.freeze()

    def start_bundle(self) -> None:
        self.stats: dict = {"masked_per_instance": collections.Counter(),
                            "tokens_per_instance": collections.Counter(),
                            "label": collections.Counter(),
                            "tokens": collections.Counter(),
                            "edits": collections.Counter()}
        # One-sentence chunk handling, dropped instances and partial-word
        # masks also go to stats.json (stats["edits"]), not only to counters.
        edits, beam_inc = self.stats["edits"], self.inc

        def build_inc(name: str, n: int = 1) -> None:
            beam_inc(name, n)
            if name.startswith(("pairs:single_", "instances:dropped:", "mask:partial")):
                edits[name] += n
        self.build_inc = build_inc

    def process(self, element: tuple[int, str, str]):
        from apache_beam.io.filesystems import FileSystems
        from corpusflow.clean.sentences import split_sentences
        from corpusflow.segment import starts_file
        _, docs_path, words_path = element
        window: collections.deque = collections.deque(maxlen=max(1, self.nsp_window))
        with FileSystems.open(words_path) as wf:
            records = starts_file.read_records(wf, words_path)
            for i, d in enumerate(iter_json_lines(docs_path)):
                doc = Document.from_json(d)
                sentences = split_sentences(doc.text)
                rec = next(records, None)
                n_offsets = sum(map(len, sentences)) + len(sentences)
                if rec is None or rec[0] != stable_hash64(doc.id) or rec[1] != n_offsets:
                    raise starts_file.StartsFileError(
                        f"{words_path} does not match {docs_path} at document {i} ({doc.id!r}): "
                        "the segment stage's output is stale; rerun without --resume")
                yield from self._doc_instances(doc, sentences, rec[2], window)
            if next(records, None) is not None:
                raise starts_file.StartsFileError(
                    f"{words_path} has more records than {docs_path} has documents")

    def _doc_instances(self, doc: Document, sentences: list, starts: Any,
                       window: collections.deque):
        from corpusflow.pretrain.example import serialize_instance
        cfg, inc, stats = self.instance_config, self.inc, self.stats
        inc("pretrain:docs")
        inc("pretrain:sentences", len(sentences))
        inc("pretrain:chars", sum(map(len, sentences)))
        prepared = self.builder.prepare(doc.id, sentences, None, inc, word_starts=starts)
        self.meter.add()
        toks = stats["tokens"]
        toks["total"] += prepared.num_tokens
        toks["unk"] += sum(ids.count(self.unk_id) for ids, _ in prepared.sentences)
        if not self.builder.usable(prepared):
            # (the builder counted instances:rejected:too_short_for_instance)
            yield pvalue.TaggedOutput(REJECTS, Reject.for_doc(
                doc, "pretrain", "too_short_for_instance", "rejected").to_json())
            return
        # Per-instance work stays off Beam counters and attribute lookups:
        # histograms are local Counters, the instance counter is bumped per pass.
        masked_hist, tokens_hist = stats["masked_per_instance"], stats["tokens_per_instance"]
        label_hist = stats["label"]
        max_seq, max_pred, want_tb = cfg.max_seq_length, cfg.max_predictions_per_seq, cfg.token_boundary
        random_doc = window_sampler(window) if cfg.pair_task == "nsp" else None
        for dupe in range(cfg.dupe_factor):
            insts = self.builder.build(prepared, dupe, self.build_inc, random_doc=random_doc)
            if insts:
                inc("pretrain:instances", len(insts))
            for inst in insts:
                masked_hist[len(inst.masked_lm_positions)] += 1
                tokens_hist[(len(inst.input_ids) // 16) * 16] += 1  # _bucket(n, 16)
                label_hist[inst.next_sentence_label] += 1
                yield inst.sort_key, serialize_instance(inst, max_seq, max_pred,
                                                        token_boundary=want_tb)
        window.append(prepared)

    def finish_bundle(self):
        yield histograms_output(self.stats)


def window_sampler(window):
    """NSP negatives: a seeded draw from the last documents of the same shard."""
    def sample(rng):
        if not window:
            return None
        # rng.random() only: randrange's algorithm may differ across Pythons.
        return window[int(rng.random() * len(window))]
    return sample


def run(ctx: Ctx) -> dict:
    """Spills stay on disk, listed in the stage's shard list, for the tfrecords stage."""
    n = ctx.b.num_doc_shards
    words = stage_files(f"{ctx.out}/stages/segment/words", n, ".words")
    p = pipeline(ctx)
    res = (p | "ShardFiles" >> beam.Create(
               [(i, d, w) for i, (d, w) in enumerate(zip(docs_paths(ctx), words))])
           | "SpreadFiles" >> beam.Reshuffle()
           | "BuildInstances" >> beam.ParDo(BuildInstances(ctx.config(InstanceConfig),
                                                           progress=progress_opts(ctx)))
           .with_outputs(REJECTS, STATS, main="examples"))
    infos = (res.examples
             | "SpillRuns" >> spill_runs(posixpath.dirname(runs_dir(ctx.out)), INSTANCE_BUCKETS)
             | "RunInfo" >> beam.Map(lambda kv: {"bucket": kv[0], "count": kv[1][1],
                                                 "file": posixpath.basename(kv[1][0]),
                                                 "crc32c": kv[1][2]}))
    side_outputs(ctx, STAGE, infos, res[STATS], res[REJECTS])
    r = collect(ctx, p, STAGE, [])
    if r:
        # Runs of bundles that failed and were retried are not listed: remove them.
        listed = {x["file"] for x in r["shards"]}
        stray = [m.path for m in match(f"{runs_dir(ctx.out)}/*")
                 if posixpath.basename(m.path) not in listed]
        if stray:
            FileSystems.delete(stray)
    return r


def summary(runs: list) -> dict:
    """Thousands of run files at scale: stats.json gets their totals, not each one."""
    return {"runs": {"files": len(runs), "count": sum(x["count"] for x in runs),
                     "buckets": len({x["bucket"] for x in runs})}}


STAGE = Stage(
    name="instances", configs=(InstanceConfig,), output_dir="stages/instances/runs",
    outputs=("stages/instances/runs/*", "rejects/pretrain-*"), rejects="pretrain", run=run,
    identity=lambda ctx: vocab_info(ctx.b), summary=summary, extra_dirs=("stages/instances",),
    describe=lambda ctx: f"{ctx.b.num_doc_shards} docs shard(s)")
