"""Beam composites for each stage; the core logic lives in ``corpusflow``.

Documents are never grouped: every decision that needs the whole corpus (exact
duplicates, repeated lines, near duplicates) is computed from small keys, kept
in sorted run files (``dedup_join``) and applied in another streaming pass over
the stage's input files. Records only meet a shuffle in ``ShardedWrite``, which
spills to disk. That keeps memory flat in input size on any runner.
"""

from __future__ import annotations

import collections
import gc
import json
import uuid
from time import perf_counter
from time import thread_time as process_time  # this thread only: not gRPC threads
from typing import Any, Iterable, Iterator, Optional

import apache_beam as beam
from apache_beam import pvalue

from corpusflow import counters
from corpusflow.document import Document, Reject, stable_hash64
from corpusflow.dedup.exact import line_keys, remove_lines
from corpusflow.quality.step import add_stats as add_quality_stats
from pipelines import dedup_join as dj
from pipelines.beam_util import BeamInc, dumps, iter_json_lines
from pipelines.progress import Progress

REJECTS = "rejects"
STATS = "stats"

counters.register([
    "dedup:in", "dedup:kept", "dedup:duplicate:exact", "dedup:duplicate:near",
    "dedup:lines:removed", "dedup:lines:docs_changed", "dedup:filtered:too_short_after_dedup",
    "dedup:lines:partial_copies",
    "dedup:rejected:decontaminated",
    "pretrain:docs",
    "pretrain:sentences", "pretrain:chars", "pretrain:instances",
    "segment:docs", "segment:sentences", "segment:chars", "segment:fallback:sentence",
])


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


# ---------------------------------------------------------------- ingest + clean
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
        self.cleaner = Cleaner(self.clean_config)
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
                             max_record_bytes=self.max_record_bytes):
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


def keyed_doc(d: dict) -> tuple[int, bytes]:
    """Docs are ordered (and sharded) by a hash of their id."""
    return stable_hash64(d["id"]), dumps(d)


def keyed_reject(r: dict) -> tuple[int, bytes]:
    b = dumps(r)
    return stable_hash64(b), b


# ---------------------------------------------------------------- dedup
class ReadDocs(beam.DoFn):
    """A docs shard file -> its document dicts, in file order."""

    def process(self, path: str):
        yield from iter_json_lines(path)


def record_key(d: dict) -> tuple:
    """Who a record is, for choosing survivors: the id, then where it was read.

    The same article can arrive twice with the same id (a wiki dump as JSON and as
    <doc> files); the file/line tie-break keeps exactly one of them.
    """
    meta = d.get("meta") or {}
    return d["id"], str(meta.get("file", "")), int(meta.get("line") or 0)


class ApplyDedup(beam.DoFn):
    """One clean shard file -> its documents with the dedup decisions applied.

    Decisions come from ``dedup_join`` run files (side input ``runs``), read
    alongside the shard because both are in sort-key order.
    ``final=False``: only whole-document decisions (exact, decontaminated, near)
    apply; a survivor is emitted with its whole clean text, as ``(id, source,
    text)`` for near dedup and decontamination, or (``docs=True``) as the document
    dict for the line keys. ``final=True``: every decision, whole-document ones
    first and repeated lines last, so a removed document is removed whole; emit
    the kept document (main) or a Reject (tagged).
    """

    def __init__(self, line_min_chars: int, min_chars: int, final: bool, num_buckets: int,
                 docs: bool = False):
        self.line_min_chars = line_min_chars
        self.min_chars = min_chars
        self.final = final
        self.num_buckets = num_buckets
        self.docs = docs

    def setup(self) -> None:
        self.inc = BeamInc()

    def start_bundle(self) -> None:
        self.stats = StageStats()

    def finish_bundle(self):
        if self.final:
            yield self.stats.emit()

    def process(self, path: str, runs: list):
        reader = dj.DecisionReader(runs, self.num_buckets)
        for d in iter_json_lines(path):
            for out in self._apply(d, reader.take(stable_hash64(d["id"]))):
                if self.final:
                    if isinstance(out, pvalue.TaggedOutput):
                        self.stats.reason("dedup", out.value["reason"])
                    else:
                        self.stats.doc_out(out["source"], out["text"])
                yield out

    def _apply(self, d: dict, payloads: list[bytes]):
        inc = self.inc if self.final else None
        if self.final:
            self.stats.doc_in(d["source"], d["text"])
        doc = Document.from_json(d)
        if inc:
            inc("dedup:in")
        dec = dj.split_decisions(payloads, record_key(d), doc.id)
        if dj.EXACT in dec:
            if inc:
                inc("dedup:duplicate:exact")
                yield pvalue.TaggedOutput(REJECTS, Reject.for_doc(
                    doc, "dedup", "exact_duplicate", "duplicate",
                    kept_id=dec[dj.EXACT][0].decode("utf-8", "surrogatepass")).to_json())
            return
        if not self.final:
            # Whole-document decisions only, and the whole text: near dedup must see
            # a near-copy as it arrived, not what line dedup would leave of it.
            if dj.DECONTAM not in dec and dj.NEAR not in dec:
                yield d if self.docs else (doc.id, doc.source, doc.text)
            return
        if dj.DECONTAM in dec:
            info = json.loads(dec[dj.DECONTAM][0])
            inc("dedup:rejected:decontaminated")
            yield pvalue.TaggedOutput(REJECTS, Reject.for_doc(
                doc, "dedup", "decontaminated", "rejected",
                detail=str(info.get("eval_file", ""))).to_json())
            return
        if dj.NEAR in dec:
            info = json.loads(dec[dj.NEAR][0])
            inc("dedup:duplicate:near")
            r = Reject.for_doc(doc, "dedup", "near_duplicate", "duplicate",
                               kept_id=info["kept_id"])
            out = r.to_json()
            out["similarity"] = info.get("similarity")
            out["cluster_id"] = info.get("cluster_id")
            yield pvalue.TaggedOutput(REJECTS, out)
            return
        if dj.LINE in dec:
            # Last: line owners were chosen among the documents that survive whole,
            # so a removed document never takes a line away from a kept one.
            gone = {int.from_bytes(k, "big") for k in dec[dj.LINE]}
            drop = [i for i, k in line_keys(doc.text, self.line_min_chars) if k in gone]
            if drop:
                chars = len("".join(doc.text.split()))
                doc.text = remove_lines(doc.text, drop)
                left = len("".join(doc.text.split()))
                inc("dedup:lines:removed", len(drop))
                inc("dedup:lines:docs_changed")
                # stats.json (stages.dedup.line_dedup) carries the same counts.
                lines = self.stats.data.setdefault("line_dedup", {})
                self.stats._add(lines, "lines_removed", len(drop))
                self.stats._add(lines, "docs_changed")
                if left < self.min_chars:
                    inc("dedup:filtered:too_short_after_dedup")
                    yield pvalue.TaggedOutput(REJECTS, Reject.for_doc(
                        doc, "dedup", "too_short_after_dedup", "filtered").to_json())
                    return
                if 2 * left < chars:
                    # Most of it was other documents' lines: a copy that near dedup
                    # did not match as a whole, kept as a fragment.
                    inc("dedup:lines:partial_copies")
                    self.stats._add(lines, "partial_copies")
        inc("dedup:kept")
        yield doc.to_json()


# ---------------------------------------------------------------- segment
class SegmentDocs(beam.DoFn):
    """``(shard index, docs shard path)`` -> that shard's word-starts file.

    The file (``corpusflow.segment.starts_file``) is written under a temp name;
    the main output ``(index, (temp path, records))`` goes to ``FinishWords``,
    which renames the one a committed bundle reported, so a retried bundle
    never leaves a half-written or duplicate file under the final name.
    """

    def __init__(self, prefix: str, num_shards: int, segmenter: str, segmenter_options: dict,
                 block_sentences: int, progress: Optional[dict] = None):
        self.prefix = prefix
        self.num_shards = num_shards
        self.segmenter_name = segmenter
        self.segmenter_options = segmenter_options
        self.block_sentences = block_sentences
        self.progress = progress or {}

    def setup(self) -> None:
        from corpusflow.segment.registry import make_segmenter
        self.segmenter = make_segmenter(self.segmenter_name, **self.segmenter_options)
        self.segmenter.setup()
        self.inc = BeamInc()
        self.meter = Progress("segment", "docs", **self.progress)
        # The dictionaries and model just loaded live as long as the worker: keep
        # them out of the cyclic GC's full scans.
        gc.freeze()

    def start_bundle(self) -> None:
        self.stats: dict = {"sentence_chars": collections.Counter()}
        # Time inside the segmenter calls, for the segment-speed benchmark
        # (bench/segment_check.py compares it with direct calls).
        # cpu_seconds is this thread's CPU (a neural model's intra-op threads
        # are not in it: compare those by wall_seconds).
        self.seg_time = {"cpu_seconds": 0.0, "wall_seconds": 0.0, "chars": 0, "sentences": 0,
                         "calls": 0}

    def process(self, element: tuple[int, str]):
        from corpusflow.segment import starts_file
        from pipelines.integrity import Crc32cWriter
        from pipelines.sharded_write import open_write, shard_name
        index, path = element
        tmp = f"{shard_name(self.prefix, index, self.num_shards, '.words')}.tmp-{uuid.uuid4().hex}"
        per_doc = getattr(self.segmenter, "word_starts", None) is not None
        n = 0
        with Crc32cWriter(open_write(tmp)) as f:
            starts_file.write_header(f)
            for block in _sentence_blocks(iter_json_lines(path), self.block_sentences):
                # Backends without whole-document word starts (LTP) segment a
                # block of documents in one call, ~block_sentences sentences
                # instead of one document's handful; a sentence's words do not
                # depend on its batch.
                segs = [(None, None)] * len(block) if per_doc else self._segment_block(block)
                for (doc, sentences), (starts, spans) in zip(block, segs):
                    starts = self._doc_starts(sentences, starts, spans)
                    n_offsets = sum(map(len, sentences)) + len(sentences)
                    f.write(starts_file.encode(stable_hash64(doc.id), n_offsets, starts))
                    n += 1
        yield index, (tmp, n, f.hexdigest)

    def _doc_starts(self, sentences: list, starts: Any, spans: Optional[list]) -> Any:
        """Word starts of ``"\n".join(sentences)``: from the block call, or now."""
        from corpusflow.pretrain.instances import InstanceBuilder
        inc = self.inc
        n_chars = sum(map(len, sentences))
        inc("segment:docs")
        inc("segment:sentences", len(sentences))
        inc("segment:chars", n_chars)
        self.stats["sentence_chars"].update(map(_bucket, map(len, sentences)))
        self.seg_time["chars"] += n_chars
        self.seg_time["sentences"] += len(sentences)
        self.meter.add()
        if starts is None and spans is None:
            # Whole-document word starts (jieba backends): no per-word span
            # tuples; None means the backend declined, so per-sentence spans.
            starts = self._timed(self.segmenter.word_starts, sentences)
            if starts is None:
                spans = self._timed(self.segmenter.segment_batch, sentences)
        if starts is None:
            starts = InstanceBuilder.word_starts_from_spans(sentences, spans, inc)
        return starts

    def _timed(self, fn: Any, arg: Any) -> Any:
        """Call the segmenter; account its CPU/wall time and new fallbacks."""
        before = self.segmenter.fallbacks
        t0, w0 = process_time(), perf_counter()
        out = fn(arg)
        self.seg_time["cpu_seconds"] += process_time() - t0
        self.seg_time["wall_seconds"] += perf_counter() - w0
        self.seg_time["calls"] += 1
        if self.segmenter.fallbacks > before:
            self.inc("segment:fallback:sentence", self.segmenter.fallbacks - before)
        return out

    def _segment_block(self, block: list) -> list:
        """``(word_starts, spans)`` per document of the block, one of them set."""
        seg = self.segmenter
        block_starts = getattr(seg, "block_word_starts", None)
        starts = (self._timed(block_starts, [ss for _, ss in block]) if block_starts is not None
                  else [None] * len(block))
        # Documents without word starts (declined by the fast path, or a backend
        # without one) are segmented together in one more call.
        rest = [i for i, st in enumerate(starts) if st is None]
        out = [(st, None) for st in starts]
        if rest:
            flat_spans = self._timed(seg.segment_batch, [s for i in rest for s in block[i][1]])
            pos = 0
            for i in rest:
                n = len(block[i][1])
                out[i] = (None, flat_spans[pos:pos + n])
                pos += n
        return out

    def finish_bundle(self):
        yield _histograms_output(self.stats, segment_time=dict(self.seg_time))


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


# ---------------------------------------------------------------- instances
class BuildInstances(beam.DoFn):
    """``(index, docs shard, word-starts file)`` -> serialized tf.train.Examples
    keyed by shuffle key.

    The whole shard is one unit of work so the NSP negative window (the last
    ``nsp_window`` documents of the same shard) is identical on every runner.
    Words come from the segment stage's file, read in step with the docs; the
    dupe passes reuse the prepared doc.
    """

    def __init__(self, vocab_file: str, do_lower_case: bool, instance_config: Any,
                 nsp_window: int, progress: Optional[dict] = None):
        self.vocab_file = vocab_file
        self.do_lower_case = do_lower_case
        self.instance_config = instance_config
        self.nsp_window = nsp_window
        self.progress = progress or {}

    def setup(self) -> None:
        from corpusflow.pretrain.instances import InstanceBuilder
        from corpusflow.tokenize.wordpiece import FullTokenizer
        local_vocab = _local_copy(self.vocab_file)
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
        random_doc = _window_sampler(window) if cfg.pair_task == "nsp" else None
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
        yield _histograms_output(self.stats)


def _histograms_output(hists: dict, **extra: Any):
    """A bundle's Counter histograms (keys as strings, for JSON) as its ``stats`` output."""
    from apache_beam.transforms.window import GlobalWindows
    stats: dict = {k: {str(a): b for a, b in v.items()} for k, v in hists.items()}
    stats.update(extra)
    return pvalue.TaggedOutput(STATS, GlobalWindows.windowed_value(stats))


def _sentence_blocks(records: Iterable[dict], block_sentences: int) -> Iterator[list]:
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


def _bucket(n: int, width: int = 10) -> int:
    return (n // width) * width


def _window_sampler(window):
    """NSP negatives: a seeded draw from the last documents of the same shard."""
    def sample(rng):
        if not window:
            return None
        # rng.random() only: randrange's algorithm may differ across Pythons.
        return window[int(rng.random() * len(window))]
    return sample


def _local_copy(path: str) -> str:
    """Vocab files may live on GCS: copy once per worker to a local temp file."""
    if "://" not in path:
        return path
    import tempfile
    from apache_beam.io.filesystems import FileSystems
    fd, local = tempfile.mkstemp(suffix=".txt")
    with FileSystems.open(path) as src, open(fd, "wb") as dst:
        dst.write(src.read())
    return local
