"""Segmentation speed (chars/s) of jieba, LTP perceptron and a tiny neural LTP model,
called directly on the same text; and how well a trained perceptron agrees with jieba.

    .venv/bin/python bench/segment_bench.py [--ltp_model DIR] [--max_chars 400000]
        [--neural_chars 20000] [--json OUT]
    .venv/bin/python bench/segment_bench.py --agreement   # train on jieba's segmentation

Text: the news files of ``shared/corpus`` (THUCNews, CLUECorpusSmall), cut into
sentences at 。！？； and line ends. Without ``--ltp_model`` a perceptron is first
trained on jieba's segmentation of wiki/baike sentences (not the benchmark text).

``measure_direct`` is the reusable part: give it any ``Segmenter`` and sentences
and it returns chars/s of ``segment_batch`` in batches, the number a pipeline's
segment stage is compared with (``pipeline_ratio``; the target is >= 0.8).

``--agreement`` measures agreement with jieba, not accuracy (gold accuracy:
``corpusflow.segment.gold`` and tests/test_segment_gold.py). It trains on ~15.75k jieba-segmented
sentences and scores word spans on a held-out 1.75k.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from typing import Any, Callable, Iterable, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CORPUS = os.environ.get("CORPUSFLOW_SHARED_CORPUS", os.path.join(ROOT, "..", "shared", "corpus"))
NEWS = ["news/thucnews_cnews_val_first300.news2016zh.jsonl",
        "news/uer_CLUECorpusSmall_sampled.txt"]
OTHER = ["wiki/zhwiki_AA_wiki_00.jsonl", "baike/dureader_demo_qa.baike2018qa.jsonl",
         "news/sogouca_tensite_smarty.news2016zh.jsonl"]

_SPLIT = re.compile(r"(?<=[。！？；])|\n")


def _texts(path: str) -> Iterable[str]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if path.endswith(".jsonl"):
                obj = json.loads(line)
                yield "\n".join(str(obj.get(k) or "") for k in ("title", "text", "desc",
                                                                  "answer", "content"))
            else:
                yield line


def load_sentences(paths: Sequence[str], max_chars: Optional[int] = None,
                   min_len: int = 2) -> list[str]:
    """Sentences of the given corpus files, in order, up to ``max_chars`` characters."""
    out: list[str] = []
    total = 0
    for p in paths:
        for text in _texts(p):
            for s in _SPLIT.split(text):
                s = s.strip()
                if len(s) < min_len:
                    continue
                out.append(s)
                total += len(s)
                if max_chars is not None and total >= max_chars:
                    return out
    return out


WARMUP = ["预热：这句话不在测试文本里。", "Warm-up 123。"]


def measure_direct(segmenter: Any, sentences: Sequence[str], batch_size: int = 256,
                   repeat: int = 3) -> dict:
    """chars/s of ``segment_batch`` over ``sentences`` in batches: best of ``repeat``
    timed passes, each after ``setup()`` and a warm-up on unrelated text.

    ``segmenter`` is a segmenter or a zero-argument factory; with a factory every
    pass gets a fresh one, so caches kept across batches (jieba's) start cold as
    on a new worker instead of having seen the text in an earlier pass.
    """
    fresh = isinstance(segmenter, type) or not hasattr(segmenter, "segment_batch")
    batches = [list(sentences[i:i + batch_size]) for i in range(0, len(sentences), batch_size)]
    chars = sum(len(s) for s in sentences)
    best = best_cpu = float("inf")
    seg = None
    for _ in range(repeat):
        if seg is None or fresh:
            seg = segmenter() if fresh else segmenter
            if hasattr(seg, "setup"):
                seg.setup()
            seg.segment_batch(WARMUP)
        t0, c0 = time.perf_counter(), time.process_time()
        for b in batches:
            seg.segment_batch(b)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    # CPU seconds too: on a shared machine wall time includes waiting for a core.
    return {"sentences": len(sentences), "chars": chars, "seconds": round(best, 4),
            "chars_per_s": round(chars / best), "cpu_seconds": round(best_cpu, 4),
            "chars_per_cpu_s": round(chars / best_cpu) if best_cpu else None,
            "fallbacks": getattr(seg, "fallbacks", 0)}


def measure_callable(fn: Callable[[list[str]], Any], sentences: Sequence[str],
                     batch_size: int = 256, repeat: int = 3) -> dict:
    """Like ``measure_direct`` for a raw backend call taking a list of sentences."""
    class _Wrap:
        def segment_batch(self, batch: list[str]) -> Any:
            return fn(batch)

    return measure_direct(_Wrap(), sentences, batch_size, repeat)


def pipeline_ratio(direct: dict, pipeline_chars: int, pipeline_seconds: float) -> dict:
    """In-pipeline speed of the segment stage relative to ``measure_direct``'s."""
    rate = pipeline_chars / pipeline_seconds
    return {"pipeline_chars_per_s": round(rate), "direct_chars_per_s": direct["chars_per_s"],
            "ratio": round(rate / direct["chars_per_s"], 3)}


def _jieba_segmented(sentences: Sequence[str]) -> list[list[str]]:
    import jieba

    jieba.setLogLevel(60)
    return [[w for w in jieba.lcut(s) if w.strip()] for s in sentences]


def train_on_jieba(sentences: Sequence[str], out_dir: str, **train_kw: Any) -> str:
    """Train a perceptron on jieba's segmentation of ``sentences`` into ``out_dir``."""
    from corpusflow.segment.train import train_perceptron

    return train_perceptron(_jieba_segmented(sentences), out_dir, **train_kw)


def jieba_agreement(n_sentences: int = 17500, seed: int = 0, **train_kw: Any) -> dict:
    """Train on 90% of ``n_sentences`` jieba-segmented corpus sentences (all sources,
    shuffled, deduplicated, whitespace removed); word-span P/R/F1 against jieba on
    the other 10%."""
    from corpusflow.segment.train import evaluate, split_holdout, train_perceptron

    seen: set[str] = set()
    pool: list[str] = []
    for s in load_sentences([os.path.join(CORPUS, p) for p in NEWS + OTHER], min_len=4):
        s = "".join(s.split())
        if len(s) <= 300 and s not in seen and re.search(r"[\u4e00-\u9fff]", s):
            seen.add(s)
            pool.append(s)
    random.Random(seed).shuffle(pool)
    data = _jieba_segmented(pool[:n_sentences])
    train, held = split_holdout(data, 0.1, seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train_perceptron(train, os.path.join(tmp, "m"), **train_kw)
        seconds = time.perf_counter() - t0
        scores = evaluate(os.path.join(tmp, "m"), held)
        size = os.path.getsize(os.path.join(tmp, "m", "cws_model.bin"))
    return {"train_sentences": len(train), "held_out": len(held), "train_seconds": round(seconds, 1),
            "model_bytes": size, **{k: round(v, 4) if isinstance(v, float) else v
                                    for k, v in scores.items()}}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ltp_model", help="perceptron model dir (else train one on jieba output)")
    ap.add_argument("--max_chars", type=int, default=400_000, help="benchmark text size")
    ap.add_argument("--neural_chars", type=int, default=20_000,
                    help="text for the tiny neural model (0: skip)")
    ap.add_argument("--batch_size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--agreement", action="store_true", help="only the jieba-agreement run")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args(argv)
    if not os.path.isdir(CORPUS):
        print(f"no corpus at {CORPUS} (set CORPUSFLOW_SHARED_CORPUS)", file=sys.stderr)
        return 2

    results: dict[str, Any] = {}
    if args.agreement:
        results["agreement_with_jieba"] = jieba_agreement()
        print(json.dumps(results, indent=1))
        return 0

    sentences = load_sentences([os.path.join(CORPUS, p) for p in NEWS], args.max_chars)
    print(f"{len(sentences)} sentences, {sum(map(len, sentences))} chars", flush=True)
    kw = {"batch_size": args.batch_size, "repeat": args.repeat}

    import jieba

    from corpusflow.segment.jieba_backend import JiebaSegmenter
    from corpusflow.segment.ltp_backend import LTPSegmenter

    jieba.setLogLevel(60)
    jieba.initialize()
    results["jieba_lcut_raw"] = measure_callable(lambda b: [jieba.lcut(s) for s in b], sentences, **kw)
    results["jieba"] = measure_direct(JiebaSegmenter, sentences, **kw)
    # The same instance across passes: its block/HMM caches have seen the text.
    results["jieba_warm_cache"] = measure_direct(JiebaSegmenter(), sentences, **kw)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.ltp_model
        if model_dir is None:
            train_text = load_sentences([os.path.join(CORPUS, p) for p in OTHER], 300_000)
            model_dir = train_on_jieba(train_text, os.path.join(tmp, "perceptron"))
        seg = LTPSegmenter(model_dir, batch_size=args.batch_size)
        seg.validate()
        seg.setup()
        raw = seg._model
        results["ltp_perceptron_raw"] = measure_callable(
            lambda b: raw.batch_predict(b, parallelism=False), sentences, **kw)
        results["ltp_perceptron"] = measure_direct(seg, sentences, **kw)
        results["ltp_perceptron_parallel"] = measure_direct(
            LTPSegmenter(model_dir, batch_size=args.batch_size, parallelism=True), sentences, **kw)
        for bs in (32, 1024):
            results[f"ltp_perceptron_batch{bs}"] = measure_direct(
                LTPSegmenter(model_dir, batch_size=bs), sentences, batch_size=bs,
                repeat=args.repeat)
        results["ltp_perceptron"]["model_bytes"] = os.path.getsize(
            os.path.join(model_dir, "cws_model.bin"))

        if args.neural_chars:
            try:
                from corpusflow.segment.train import write_random_neural_model

                sub = load_sentences([os.path.join(CORPUS, p) for p in NEWS], args.neural_chars)
                nd = write_random_neural_model(os.path.join(tmp, "neural"), "".join(sentences))
                results["ltp_neural_tiny_cpu"] = measure_direct(
                    LTPSegmenter(nd, batch_size=64), sub, batch_size=args.batch_size, repeat=1)
            except ImportError as e:
                results["ltp_neural_tiny_cpu"] = {"skipped": str(e)[:200]}

    print(f"{'':28s} {'chars/s':>10s} {'chars/cpu-s':>12s}")
    for name, r in results.items():
        print(f"{name:28s} {r.get('chars_per_s', r.get('skipped'))!s:>10s} "
              f"{r.get('chars_per_cpu_s', '')!s:>12s}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
