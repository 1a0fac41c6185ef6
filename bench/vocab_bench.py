"""Benchmark vocab.build: wall time and peak RSS on a ~200 MB cleaned-docs corpus.

    .venv/bin/python bench/vocab_bench.py [--mb 200] [--kind both] [--vocab_size 21128]
        [--sample_sentences 1000000] [--repeat 1] [--workdir DIR]

Makes ``DIR/docs/part-*.jsonl.gz`` by replicating the real Chinese text in
../shared/corpus (wiki, news, baike, UER/CLUE lines) until the documents hold
``--mb`` MB of UTF-8 text, then runs ``python -m vocab.build`` in a child process
and reports its wall time, peak RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss``)
and the per-phase times it prints. With ``--repeat 2`` it builds twice and
checks the outputs are byte-identical. The text is raw, not cleaned; replicas
repeat it, so this measures throughput, not vocab quality.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Iterator

REPO = pathlib.Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def source_texts() -> Iterator[str]:
    """Document texts from the shared corpus (whatever of it exists)."""
    for path, field in ((CORPUS / "wiki" / "zhwiki_AA_wiki_00.jsonl", "text"),
                        (CORPUS / "news" / "thucnews_cnews_val_first300.news2016zh.jsonl", "content"),
                        (CORPUS / "news" / "sogouca_tensite_smarty.news2016zh.jsonl", "content"),
                        (CORPUS / "baike" / "dureader_demo_qa.baike2018qa.jsonl", "answer")):
        if path.exists():
            for line in path.open(encoding="utf-8"):
                t = json.loads(line).get(field) or ""
                if t.strip():
                    yield t
    for path in (CORPUS / "news" / "uer_CLUECorpusSmall_sampled.txt", CORPUS / "news" / "albert_zh_news_zh_1.txt"):
        if path.exists():
            for line in path.open(encoding="utf-8"):
                if line.strip():
                    yield line.strip()


def make_docs(out_dir: pathlib.Path, mb: float, shard_mb: float = 50) -> tuple[int, int]:
    """Write replicated documents; returns (documents, text bytes)."""
    texts = list(source_texts())
    if not texts:
        sys.exit(f"no text found under {CORPUS}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target, total, docs, shard = mb * 1e6, 0, 0, 0
    fh = None
    while total < target:
        for t in texts:
            if fh is None or total >= (shard * shard_mb) * 1e6:
                if fh:
                    fh.close()
                fh = gzip.open(out_dir / f"part-{shard:05d}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1)
                shard += 1
            fh.write(json.dumps({"id": f"bench:{docs}", "source": "text", "title": "", "text": t},
                                ensure_ascii=False) + "\n")
            docs += 1
            total += len(t.encode("utf-8"))
            if total >= target:
                break
    fh.close()
    return docs, total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=200)
    p.add_argument("--kind", default="both", choices=("wordpiece", "sentencepiece", "both"))
    p.add_argument("--vocab_size", type=int, default=21128)
    p.add_argument("--sample_sentences", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--workdir", help="keep the docs and outputs here (default: a temp dir, removed)")
    args = p.parse_args()
    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="vocab_bench_"))
    try:
        t0 = time.monotonic()
        docs_dir = work / "docs"
        if not any(docs_dir.glob("*.jsonl.gz")):
            n_docs, n_bytes = make_docs(docs_dir, args.mb)
            print(f"made {n_docs:,} documents, {n_bytes / 1e6:.0f} MB of text in {time.monotonic() - t0:.0f} s")
        outs = []
        for i in range(args.repeat):
            out = work / f"out{i}"
            shutil.rmtree(out, ignore_errors=True)  # compare this run's files only
            cmd = [sys.executable, "-m", "vocab.build", "--docs", str(docs_dir / "*.jsonl.gz"), "--output", str(out),
                   "--vocab_size", str(args.vocab_size), "--kind", args.kind,
                   "--sample_sentences", str(args.sample_sentences)]
            t = time.monotonic()
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            wall = time.monotonic() - t
            if proc.returncode:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
            print(f"run {i + 1}: {wall:.1f} s wall, peak RSS {peak_mb:.0f} MiB (largest child so far)")
            print("  " + "\n  ".join(l for l in proc.stderr.splitlines() if l.startswith("vocab.")))
            print("  " + "\n  ".join(proc.stdout.splitlines()))
            outs.append(out)
        if len(outs) > 1:
            names = sorted(f.name for f in outs[0].iterdir())
            same = all((o / n).read_bytes() == (outs[0] / n).read_bytes() for o in outs[1:] for n in names)
            print(f"outputs byte-identical across runs: {same} ({', '.join(names)})")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
