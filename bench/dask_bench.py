"""DaskRunner benchmark: wall time vs the local runner at equal workers, speed-up of
1 vs 2 Dask workers, peak RSS per worker and of the scheduler.

    python bench/dask_bench.py [--sizes 20MB,200MB] [--workers 2 | 1,2] [--local true|false]
                               [--corpus DIR] [--stop_after tfrecords] [--near_dedup]

The corpus is bench/run.py's (real ../shared/corpus text replicated into 8 JSON-lines
files of the given size). Each Dask measurement starts a fresh cluster as
subprocesses (``dask scheduler`` and N ``dask worker --nthreads 1``, on 127.0.0.1),
runs ``python -m pipelines.build --runner DaskRunner --dask_address ...`` in a child
process, then reads each process's peak RSS (VmHWM) before tearing the cluster
down. The local runner runs the same build with ``--direct_num_workers N
--direct_running_mode multi_processing``; the TFRecords of both must be identical
(the script fails otherwise). Results: a table, and bench/results/dask_bench.json.

Because this machine is shared, each row also records the 1-minute load average
during the build (min, mean, max) and the CPU seconds spent: for Dask the driver's
plus every worker's and the scheduler's during the build, for the local runner the
build process's and the worker processes' it waited for. CPU seconds depend much
less on the load than wall time does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import load_documents, make_corpus, parse_size  # noqa: E402

DASK = str(Path(sys.executable).with_name("dask"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _build_cmd(corpus: Path, out: Path, args) -> list[str]:
    cmd = [sys.executable, "-m", "pipelines.build", "--input", str(corpus / "part-*.jsonl"),
           "--output", str(out), "--max_seq_length", "128", "--dupe_factor", "2",
           "--num_shards", "8", "--progress", "false", "--stop_after", args.stop_after]
    if args.near_dedup:
        cmd += ["--near_dedup", "true"]
    return cmd


_LOADS: list[float] = []
_CPU: list[float] = [0.0]


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cpu_s() -> float:
    """CPU seconds (user + system) of the calling process (runs on Dask workers too)."""
    t = os.times()
    return t.user + t.system


def _run(cmd: list[str]) -> float:
    """Run a build; its wall time. Samples the 1-minute load average while it runs and
    keeps the CPU seconds of the build process and the children it waited for in _CPU."""
    t0 = time.time()
    c0 = _children_cpu_s()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    _LOADS.clear()
    while True:
        _LOADS.append(os.getloadavg()[0])
        try:
            _, err = proc.communicate(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({proc.returncode}):\n{err[-4000:]}")
    _CPU[0] = _children_cpu_s() - c0
    return time.time() - t0


def _load() -> list[float]:
    """min, mean, max of the 1-minute load average sampled during the last build."""
    return [round(min(_LOADS), 1), round(sum(_LOADS) / len(_LOADS), 1), round(max(_LOADS), 1)]


def _digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted((out / "tfrecords").glob("part-*")) + sorted((out / "docs").glob("*")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def run_local(corpus: Path, out: Path, workers: int, args) -> dict:
    cmd = _build_cmd(corpus, out, args)
    if workers > 1:
        cmd += ["--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"]
    wall = _run(cmd)
    return {"runner": "local", "workers": workers, "wall": wall, "load": _load(),
            "cpu_s": round(_CPU[0], 1),
            "digest": _digest(out)}


def run_dask(corpus: Path, out: Path, workers: int, args, logs: Path) -> dict:
    import distributed
    port = _port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = []
    logs.mkdir(parents=True, exist_ok=True)
    try:
        procs.append(subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=env, stdout=open(logs / "scheduler.log", "wb"), stderr=subprocess.STDOUT,
            start_new_session=True))
        for i in range(workers):
            procs.append(subprocess.Popen(
                [DASK, "worker", address, "--nthreads", "1", "--nworkers", "1", "--host",
                 "127.0.0.1", "--no-dashboard", "--local-directory", str(logs / f"w{i}")],
                env=env, stdout=open(logs / f"worker{i}.log", "wb"), stderr=subprocess.STDOUT,
                start_new_session=True))
        client = None
        for _ in range(120):
            try:
                client = distributed.Client(address, timeout=5, set_as_default=False)
                break
            except OSError:
                time.sleep(0.5)
        client.wait_for_workers(workers, timeout=120)
        cpu0 = sum(client.run(_cpu_s).values()) + client.run_on_scheduler(_cpu_s)
        wall = _run(_build_cmd(corpus, out, args) + ["--runner", "DaskRunner",
                                                     "--dask_address", address])
        cluster_cpu = sum(client.run(_cpu_s).values()) + client.run_on_scheduler(_cpu_s) - cpu0
        worker_rss = sorted(client.run(lambda: _hwm_mb(os.getpid())).values())
        sched_rss = client.run_on_scheduler(lambda: _hwm_mb(os.getpid()))
        client.close()
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    return {"runner": "dask", "workers": workers, "wall": wall, "load": _load(),
            "cpu_s": round(_CPU[0] + cluster_cpu, 1),
            "digest": _digest(out),
            "worker_peak_rss_mb": [round(x) for x in worker_rss],
            "scheduler_peak_rss_mb": round(sched_rss)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="20MB")
    ap.add_argument("--workers", default="2")
    ap.add_argument("--local", default="true", help="also run the local runner (overhead)")
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus"))
    ap.add_argument("--stop_after", default="tfrecords")
    ap.add_argument("--near_dedup", action="store_true")
    ap.add_argument("--work", default="/tmp/corpusflow-dask-bench")
    args = ap.parse_args(argv)
    work = Path(args.work)
    docs = load_documents(Path(args.corpus))
    rows = []
    for size_s in args.sizes.split(","):
        corpus = make_corpus(docs, parse_size(size_s), work)
        for w in [int(x) for x in args.workers.split(",")]:
            runs = [run_dask(corpus, work / f"out-{size_s}-dask{w}", w, args,
                             work / f"logs-{size_s}-{w}")]
            if args.local == "true":
                runs.append(run_local(corpus, work / f"out-{size_s}-local{w}", w, args))
                if runs[0]["digest"] != runs[1]["digest"]:
                    raise SystemExit(f"{size_s} x{w}: Dask and local outputs differ")
            for r in runs:
                r["size"] = size_s
                rows.append(r)
                print(f"{size_s:>6} {r['runner']:>5} x{w}: {r['wall']:7.1f} s, {r['cpu_s']:7.1f} "
                      f"CPU s (load {r['load']})"
                      + (f"  worker peak RSS {r['worker_peak_rss_mb']} MB, scheduler "
                         f"{r['scheduler_peak_rss_mb']} MB" if r["runner"] == "dask" else ""),
                      flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dask_bench.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
