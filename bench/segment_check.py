"""Segment speed inside the pipeline vs the segmenter called directly on the same text.

The segment stage times its segmenter calls (thread CPU) and reports them in
``stats.json`` (``stages.segment.segment_time``). This module re-reads the
sentences of that build's ``docs/`` output (split exactly as the stage splits
them) and times, on them:

- ``direct``: our segmenter's ``segment_batch`` in batches of 256 (a fresh
  instance, as on a new worker);
- ``raw``: the library's own call (``rjieba.cut``, ``jieba.lcut``, LTP's
  ``batch_predict``), the segmenter's "own speed" with none of our code.

The issue's target is pipeline >= 0.8 x direct. Used by ``bench/run.py --segment_check``
and on its own:

    python bench/segment_check.py OUT_DIR [--direct_chars 2000000]
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import sys
from typing import Any, Callable, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from segment_bench import measure_callable, measure_direct  # noqa: E402


def docs_sentences(out_dir: str, max_chars: Optional[int] = None) -> list[str]:
    """Sentences of the build's final docs, in shard order, up to ``max_chars``."""
    from corpusflow.clean.sentences import split_sentences

    out: list[str] = []
    total = 0
    for path in sorted(glob.glob(os.path.join(out_dir, "docs", "*.jsonl*"))):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                for s in split_sentences(json.loads(line)["text"]):
                    out.append(s)
                    total += len(s)
                if max_chars and total >= max_chars:
                    return out
    return out


def raw_call(name: str, seg: Any) -> Optional[Callable[[list[str]], Any]]:
    """The backend library's own batch call, without our span building."""
    if name == "jieba_rs":
        import rjieba

        return lambda b: [rjieba.cut(s, seg.hmm) for s in b]
    if name == "jieba":
        import jieba

        jieba.setLogLevel(60)
        jieba.initialize()
        return lambda b: [jieba.lcut(s, HMM=seg.hmm) for s in b]
    if name == "ltp" and getattr(seg, "kind", None) == "perceptron":
        seg.setup()
        model = seg._model
        return lambda b: model.batch_predict(b, parallelism=False)
    return None


def check(out_dir: str, direct_chars: Optional[int] = 2_000_000, repeat: int = 1) -> dict:
    """Pipeline vs direct vs raw chars per CPU-second for the build in ``out_dir``."""
    from corpusflow.segment.registry import SegmentConfig, make_from_config

    manifest = json.load(open(os.path.join(out_dir, "manifest.json"), encoding="utf-8"))
    stats = json.load(open(os.path.join(out_dir, "stats.json"), encoding="utf-8"))
    st = stats["stages"]["segment"]["segment_time"]
    cfg = manifest["config"]
    name = cfg["segmenter"]
    # The build's own mapping from options to the backend (options the manifest
    # does not record take their defaults).
    seg_cfg = SegmentConfig.from_options(cfg)
    sentences = docs_sentences(out_dir, direct_chars)

    def factory():
        return make_from_config(seg_cfg)

    direct = measure_direct(factory, sentences, repeat=repeat)
    raw_fn = raw_call(name, factory())
    raw = measure_callable(raw_fn, sentences, repeat=repeat) if raw_fn else None
    pipe_rate = st["chars"] / st["cpu_seconds"] if st["cpu_seconds"] else None
    pipe_wall = st["chars"] / st["wall_seconds"] if st.get("wall_seconds") else None
    res = {"segmenter": name, "pipeline": {**st, "chars_per_cpu_s": round(pipe_rate or 0),
                                           "chars_per_s": round(pipe_wall or 0)},
           # Wall-clock ratio: the one to read for multi-threaded (neural) backends,
           # whose helper threads' CPU the pipeline's thread-CPU figure leaves out.
           "ratio_vs_direct_wall": (round(pipe_wall / direct["chars_per_s"], 3)
                                    if pipe_wall else None),
           "direct": direct, "raw": raw,
           "ratio_vs_direct": round(pipe_rate / direct["chars_per_cpu_s"], 3) if pipe_rate else None,
           "ratio_vs_raw": (round(pipe_rate / raw["chars_per_cpu_s"], 3)
                            if pipe_rate and raw else None)}
    return res


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--direct_chars", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    print(json.dumps(check(args.out_dir, args.direct_chars, args.repeat), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
