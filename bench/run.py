"""End-to-end benchmark: raw text -> TFRecords, MB of raw input per CPU-second and peak RSS.

    python bench/run.py [--corpus DIR] [--sizes 20MB,200MB,1GB] [--segmenter jieba|ltp --ltp_model DIR]
                        [--workers 1|2|1,2 [--repeat N]] [--stop_after dedup|tfrecords]
                        [--segment_check] [--near_dedup]

For each size the real text of ``--corpus`` (default ``../shared/corpus``) is replicated
into a news2016zh-style JSON-lines corpus of that size; replica k > 0 of a document has
its sentences shuffled with a seeded RNG, so replicas are distinct (exact and line dedup
do not remove them) while the text stays real Chinese. Each size runs
``python -m pipelines.build`` in a child process measured with ``os.wait4`` (CPU of the
whole process tree, peak RSS). Settings follow the yardstick: seq 128, max_pred 20,
dupe_factor 2. Results are printed as a table and written to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from corpusflow.counters import CounterDict  # noqa: E402
from corpusflow.document import Document, stable_hash64  # noqa: E402
from corpusflow.io.readers import read_file  # noqa: E402

_SENT = re.compile(r"(?<=[。！？；])")


def parse_size(s: str) -> int:
    s = s.strip().upper()
    for unit, mult in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * mult)
    return int(s)


def load_documents(corpus: Path) -> list[Document]:
    """Every readable document of the corpus (Chinese formats only)."""
    docs = []
    for path in sorted(corpus.rglob("*")):
        if not path.is_file() or path.suffix in (".md", ".1", ".dat") or "original" in path.parts:
            continue
        if path.name.endswith(".json") and "testcases" in path.name:
            continue
        for rec in read_file(str(path), inc=CounterDict()):
            if isinstance(rec, Document) and len(rec.text) >= 50:
                docs.append(rec)
    return docs


def _perturb(text: str, rng: random.Random) -> str:
    paras = []
    for para in text.split("\n"):
        sents = [s for s in _SENT.split(para) if s]
        rng.shuffle(sents)
        paras.append("".join(sents))
    rng.shuffle(paras)
    return "\n".join(paras)


def make_corpus(docs: list[Document], size: int, out_dir: Path, parts: int = 8) -> Path:
    """Write a replicated corpus of about ``size`` bytes as ``parts`` files (cached by size).

    Several files, because one input file is read by one worker (as on Dataflow):
    a single file would serialise the ingest stage of a multi-worker run.
    """
    cdir = out_dir / f"corpus-{size}"
    done = cdir / "_DONE"
    if done.exists():
        return cdir
    cdir.mkdir(parents=True, exist_ok=True)
    files = [open(cdir / f"part-{i:02d}.jsonl", "w", encoding="utf-8") for i in range(parts)]
    written = 0
    k = 0
    n = 0
    while written < size:
        for d in docs:
            text = d.text if k == 0 else _perturb(d.text, random.Random(stable_hash64(f"{k}|{d.id}")))
            line = json.dumps({"news_id": f"{d.id}~{k}", "title": d.title, "content": text,
                               "source": d.source}, ensure_ascii=False) + "\n"
            files[n % parts].write(line)
            n += 1
            written += len(line.encode("utf-8"))
            if written >= size:
                break
        k += 1
    for f in files:
        f.close()
    done.write_text(str(written))
    return cdir


def run_build(corpus_file: Path, out: Path, args, workers: int = 1) -> dict:
    cmd = [sys.executable, "-m", "pipelines.build", "--input", str(corpus_file / "part-*.jsonl"),
           "--output", str(out),
           "--vocab_file", args.vocab_file, "--max_seq_length", "128", "--max_predictions_per_seq", "20",
           "--dupe_factor", "2", "--num_shards", "8", "--num_doc_shards", str(args.doc_shards),
           "--segmenter", args.segmenter, "--progress", "false", "--stop_after", args.stop_after]
    if args.ltp_model:
        cmd += ["--ltp_model", args.ltp_model]
    if args.near_dedup:
        cmd += ["--near_dedup", "true"]
    if workers > 1:
        cmd += ["--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.time() - t0
    log = proc.stdout.read().decode("utf-8", "replace")
    if status != 0:
        raise SystemExit(f"build failed ({status}):\n{log[-4000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    stage_times, stage_rss = {}, {}
    for stage in ("clean", "dedup", "segment", "instances", "tfrecords"):
        p = out / "stages" / f"{stage}.json"
        if p.exists():
            sm = json.loads(p.read_text())
            stage_times[stage] = sm["wall_seconds"]
            stage_rss[stage] = round(sm.get("peak_rss_mb") or 0)
    return {"cpu": ru.ru_utime + ru.ru_stime, "wall": wall, "rss_mb": ru.ru_maxrss / 1024,
            "manifest": manifest, "stages": stage_times, "stage_rss": stage_rss}


def print_scaling(rows: list[dict], worker_counts: list[int]) -> None:
    """Median wall and CPU per (size, workers), and the speed-up over the first count."""
    import statistics
    for size in dict.fromkeys(r["size"] for r in rows):
        med = {w: (statistics.median(r["wall_s"] for r in rows if r["size"] == size and r["workers"] == w),
                   statistics.median(r["cpu_s"] for r in rows if r["size"] == size and r["workers"] == w))
               for w in worker_counts}
        base_wall, base_cpu = med[worker_counts[0]]
        for w in worker_counts[1:]:
            wall, cpu = med[w]
            print(f"{size}: {w} workers vs {worker_counts[0]}: wall {wall:.1f}s vs {base_wall:.1f}s "
                  f"= {base_wall / wall:.2f}x faster; CPU {cpu:.1f}s vs {base_cpu:.1f}s "
                  f"(+{100 * (cpu / base_cpu - 1):.0f}%)")


def _segment_time(out: Path):
    """The segment stage's own account of its segmenter calls (stats.json)."""
    p = out / "stats.json"
    if not p.exists():
        return None
    st = json.loads(p.read_text()).get("stages", {}).get("segment", {}).get("segment_time")
    return st if st and st.get("cpu_seconds") else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus"))
    ap.add_argument("--sizes", default="20MB")
    ap.add_argument("--segmenter", default="jieba")
    ap.add_argument("--ltp_model", default=None)
    ap.add_argument("--vocab_file", default=str(ROOT / "data" / "vocab" / "sample_vocab.txt"))
    ap.add_argument("--workers", default="1",
                    help="worker counts to run, e.g. 1,2: each size runs with each, alternating, "
                         "--repeat times, and the wall-time speed-up of the medians is printed "
                         "(alternating pairs because this machine's speed drifts between runs)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--doc_shards", type=int, default=16)
    ap.add_argument("--stop_after", default="tfrecords", choices=["clean", "dedup", "segment", "instances", "tfrecords"])
    ap.add_argument("--work_dir", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--segment_check", action="store_true",
                    help="also time the segmenter called directly on the build's sentences "
                         "and print the in-pipeline/direct ratio (target >= 0.8)")
    ap.add_argument("--keep_output", action="store_true", help="keep each size's build output")
    ap.add_argument("--near_dedup", action="store_true",
                    help="build with --near_dedup true (MinHash near-duplicate removal)")
    args = ap.parse_args(argv)
    corpus = Path(args.corpus)
    if not corpus.exists():
        corpus = ROOT / "data" / "sample"
    work = Path(args.work_dir)
    docs = load_documents(corpus)
    print(f"corpus {corpus}: {len(docs)} documents", file=sys.stderr)
    rows = []
    worker_counts = [int(w) for w in str(args.workers).split(",")]
    runs = [(size_s, rep, w) for size_s in args.sizes.split(",") for rep in range(args.repeat)
            for w in worker_counts]
    for size_s, rep, workers in runs:
        size = parse_size(size_s)
        cf = make_corpus(docs, size, work)
        mb = sum(p.stat().st_size for p in cf.glob("part-*.jsonl")) / 2**20
        out = work / f"out-{size_s}-{args.segmenter}-w{workers}{'-near' if args.near_dedup else ''}"
        shutil.rmtree(out, ignore_errors=True)  # stale stage manifests would skew the shares
        r = run_build(cf, out, args, workers)
        m = r["manifest"]
        tf = m.get("tfrecords", {})
        total_stage = sum(r["stages"].values()) or 1.0
        row = {"size": size_s, "input_mb": round(mb, 1), "docs_kept": m["counts"]["kept"],
               "instances": tf.get("num_instances", 0), "cpu_s": round(r["cpu"], 1),
               "wall_s": round(r["wall"], 1), "mb_per_cpu_s": round(mb / r["cpu"], 3),
               "instances_per_cpu_s": round(tf.get("num_instances", 0) / r["cpu"], 1),
               "peak_rss_mb": round(r["rss_mb"]), "segmenter": args.segmenter, "workers": workers,
               "rep": rep,
               "stage_share": {k: round(v / total_stage, 3) for k, v in r["stages"].items()},
               "stage_peak_rss_mb": r["stage_rss"]}
        seg_t = _segment_time(out)
        if seg_t:
            row["segment_chars_per_cpu_s"] = round(seg_t["chars"] / seg_t["cpu_seconds"])
            row["segment_share_of_cpu"] = round(seg_t["cpu_seconds"] / r["cpu"], 3)
        if args.segment_check and args.stop_after == "tfrecords":
            from segment_check import check
            sc = check(str(out))
            row["segment_direct_chars_per_cpu_s"] = sc["direct"]["chars_per_cpu_s"]
            row["segment_raw_chars_per_cpu_s"] = (sc["raw"] or {}).get("chars_per_cpu_s")
            row["segment_ratio_vs_direct"] = sc["ratio_vs_direct"]
            row["segment_ratio_vs_raw"] = sc["ratio_vs_raw"]
        if not args.keep_output:
            # The TFRecords of a 1 GB run are ~5 GB: keep the manifests only.
            shutil.rmtree(out / "tfrecords", ignore_errors=True)
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), file=sys.stderr)
    hdr = ["size", "workers", "input_mb", "docs_kept", "instances", "cpu_s", "wall_s", "mb_per_cpu_s",
           "instances_per_cpu_s", "peak_rss_mb", "stage_peak_rss_mb", "stage_share",
           "segment_chars_per_cpu_s",
           "segment_ratio_vs_direct", "segment_ratio_vs_raw"]
    print(" | ".join(hdr))
    for row in rows:
        print(" | ".join(str(row.get(h, "")) for h in hdr))
    if len(worker_counts) > 1:
        print_scaling(rows, worker_counts)
    if len(rows) > 1 and len(worker_counts) == 1:
        base = rows[0]["cpu_s"] / rows[0]["input_mb"]
        for row in rows[1:]:
            print(f"cost per MB at {row['size']} vs {rows[0]['size']}: "
                  f"{(row['cpu_s'] / row['input_mb']) / base:.3f}x")
    work.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (work / f"bench-{stamp}.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
