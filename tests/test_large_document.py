"""Issue 3: one very large document keeps memory bounded by its own size."""

from __future__ import annotations

import gzip
import json
import tracemalloc

from corpusflow.document import Document
from corpusflow.pretrain.instances import InstanceConfig
from corpusflow.segment.registry import SegmentConfig
from pipelines.stages.instances import BuildInstances
from pipelines.stages.segment import SegmentDocs
from tests.pipeline_util import ROOT, SAMPLE

VOCAB = str(ROOT / "data" / "vocab" / "sample_vocab.txt")


class _NoCounters:
    def __call__(self, name: str, n: int = 1) -> None:
        pass


def test_one_huge_document_memory_is_linear_in_its_size(tmp_path):
    wiki = [json.loads(x)["text"] for x in (SAMPLE / "zhwiki_sample.jsonl").read_text(
        encoding="utf-8").splitlines()]
    text = "\n".join(wiki)
    while len(text) < 400_000:
        text += "\n" + text
    text = text[:400_000]
    path = tmp_path / "docs-00000-of-00001.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(Document("wiki:huge", "wiki", "huge", text, {}).to_json(),
                           ensure_ascii=False) + "\n")
    seg = SegmentDocs(str(tmp_path / "words"), 1,
                      SegmentConfig(segmenter="jieba_rs", segment_block_sentences=256))
    seg.setup()
    seg.inc = _NoCounters()
    seg.start_bundle()
    tracemalloc.start()
    ((_, (words, n_docs, _crc)),) = list(seg.process((0, str(path))))
    _, seg_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n_docs == 1
    fn = BuildInstances(InstanceConfig(vocab_file=VOCAB, nsp_window=8))
    fn.setup()
    fn.inc = _NoCounters()
    fn.start_bundle()
    tracemalloc.start()
    n = 0
    nbytes = 0
    for key, example in fn.process((0, str(path), words)):
        n += 1
        nbytes += len(example)
        del example  # the writer spills; the test keeps nothing
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # ~400k characters -> ~6,400 instances over two passes.
    assert n > 5000
    # Only the document, its tokens and one pass of instances are alive at once:
    # well under 200 bytes per input character (measured ~60 MB for 400k chars);
    # segmenting it holds the text, its sentences and one word-starts bitmap.
    assert peak < 200 * len(text), peak
    assert seg_peak < 200 * len(text), seg_peak
