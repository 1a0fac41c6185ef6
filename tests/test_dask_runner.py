"""Issue 19: the build on a real Dask cluster (a scheduler and two worker processes
started as subprocesses on 127.0.0.1) is byte-identical to the local runner's,
and a worker killed mid-stage gives identical output or a clear failure."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="needs the [dask] extra")

import apache_beam as beam  # noqa: E402
from apache_beam.metrics import Metrics  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.transforms.window import GlobalWindows  # noqa: E402

from pipelines import beam_util, cli  # noqa: E402
from pipelines.errors import UsageError  # noqa: E402
from pipelines.runners import dask_cluster, dask_runner  # noqa: E402
from tests.pipeline_util import ROOT, SAMPLE_INPUTS, build  # noqa: E402

DASK = str(Path(sys.executable).with_name("dask"))
START_TIMEOUT_S = 90
BUILD_ARGS = ["--near_dedup", "true"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (nanny and its worker), SIGKILL what is left."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask scheduler`` + two ``dask worker --nthreads 1`` processes; always torn down."""
    if not os.path.exists(DASK):
        pytest.skip("the dask command is not installed")
    logs = tmp_path_factory.mktemp("dask-logs")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        out = open(logs / f"{name}.log", "wb")
        procs.append(subprocess.Popen([DASK, *args], cwd=str(logs), env=env, stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port),
              "--no-dashboard")
        for i in range(2):
            start(f"worker{i}", "worker", address, "--nthreads", "1", "--nworkers", "1",
                  "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}",
                  "--local-directory", str(logs / f"w{i}"))
        deadline = time.time() + START_TIMEOUT_S
        client = None
        while time.time() < deadline:
            try:
                client = distributed.Client(address, timeout=5, set_as_default=False)
                client.wait_for_workers(2, timeout=max(1, deadline - time.time()))
                break
            except (OSError, TimeoutError, distributed.TimeoutError):
                time.sleep(0.5)
        if client is None or len(client.scheduler_info()["workers"]) < 2:
            pytest.fail("the Dask cluster did not start: "
                        + " | ".join(p.read_text()[-300:] for p in logs.glob("*.log")))
        yield address, client, procs
        client.close()
    finally:
        dask_cluster.close_all()  # the runner's clients, while the scheduler still answers
        for p in reversed(procs):
            _stop(p)


def _run(p_fn, address: str):
    """Run the pipeline ``p_fn`` builds on the cluster; (result, printed elements)."""
    opts = PipelineOptions(["--runner", "DaskRunner", "--dask_address", address])
    p = beam.Pipeline(runner=dask_runner.DaskRunner(), options=opts)
    p_fn(p)
    res = p.run()
    res.wait_until_finish()
    return res


def _outputs(out: Path) -> dict[str, str]:
    """sha256 of every output file but the run-dependent JSON/HTML (timings, paths)."""
    digests = {}
    for path in sorted(glob.glob(str(out / "**" / "*"), recursive=True)):
        rel = os.path.relpath(path, out)
        if os.path.isfile(path) and not rel.endswith((".json", ".html")):
            digests[rel] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    for stage in ("clean", "dedup", "segment", "tfrecords"):  # shard lists: names, counts, crcs
        digests[f"stages/{stage}_shards.json"] = hashlib.sha256(
            (out / "stages" / f"{stage}_shards.json").read_bytes()).hexdigest()
    return digests


def _summary(m: dict) -> dict:
    return {k: m[k] for k in ("counters", "counts", "docs", "tfrecords")}


@pytest.fixture(scope="module")
def local_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    m = build(out, *BUILD_ARGS)
    return out, m


# ----------------------------------------------------------------- the six fixes
class _Tagged(beam.DoFn):
    """Evens to main, odds tagged, a per-bundle count from finish_bundle, a counter."""

    def start_bundle(self):
        self.n = 0

    def process(self, x):
        Metrics.counter(beam_util.NAMESPACE, "read:records").inc()
        self.n += 1
        if x % 2:
            yield beam.pvalue.TaggedOutput("odd", x)
        else:
            yield x

    def finish_bundle(self):
        yield GlobalWindows.windowed_value(("bundle", self.n))


def _write(path: str):
    def write(xs):
        Path(path).write_text(json.dumps(sorted(xs, key=repr)))
    return write


def test_every_sink_tags_finish_bundle_counters_side_inputs(cluster, tmp_path):
    address, client, _ = cluster
    sinks = {k: str(tmp_path / f"{k}.json") for k in ("even", "odd", "grouped")}

    def pipeline(p):
        res = (p | beam.Create(list(range(20))) | beam.Reshuffle()
               | beam.ParDo(_Tagged()).with_outputs("odd", main="even"))
        offset = p | "Offset" >> beam.Create([1000])
        res.even | "ListEven" >> beam.combiners.ToList() | "WriteEven" >> beam.Map(
            _write(sinks["even"]))
        (res.odd | "AddOffset" >> beam.Map(lambda x, o: x + o, beam.pvalue.AsSingleton(offset))
         | "ListOdd" >> beam.combiners.ToList() | "WriteOdd" >> beam.Map(_write(sinks["odd"])))
        (res.even | "Key" >> beam.Map(lambda x: (x[0], x[1]) if isinstance(x, tuple) else
                                      ("even", x))
         | beam.GroupByKey() | "Sum" >> beam.Map(lambda kv: (kv[0], sum(kv[1])))
         | "ListGrouped" >> beam.combiners.ToList() | "WriteGrouped" >> beam.Map(
             _write(sinks["grouped"])))

    res = _run(pipeline, address)
    even = json.loads(Path(sinks["even"]).read_text())
    # Main output: the evens and the finish_bundle pairs, never an odd (fix 2, 3).
    assert sorted(x for x in even if isinstance(x, int)) == list(range(0, 20, 2))
    assert sum(x[1] for x in even if isinstance(x, list)) == 20
    # Every sink ran, not only the last one (fix 1); the side input reached them (fix 5).
    assert json.loads(Path(sinks["odd"]).read_text()) == [1000 + x for x in range(1, 20, 2)]
    assert sorted(map(tuple, json.loads(Path(sinks["grouped"]).read_text()))) == [
        ("bundle", 20), ("even", 90)]
    # Counters (fix 4), through the helper the driver reads them with.
    assert beam_util.query_counters(res) == {"read:records": 20}


def test_create_makes_one_task_per_file_and_reshuffle_spreads(cluster, tmp_path):
    """Six input files are six tasks on two workers (fix 6), not one partition of 128."""
    address, _, _ = cluster

    def where(x):
        import os as _os
        import time as _t
        _t.sleep(0.3)
        return x, _os.getpid()

    out = str(tmp_path / "pids.json")

    def pipeline(p):
        (p | beam.Create([f"file{i}" for i in range(6)]) | beam.Reshuffle()
         | beam.Map(where) | beam.combiners.ToList() | beam.Map(_write(out)))

    _run(pipeline, address)
    pairs = json.loads(Path(out).read_text())
    assert sorted(x for x, _ in pairs) == [f"file{i}" for i in range(6)]
    assert len({pid for _, pid in pairs}) == 2  # both worker processes got files


def _watch_stored_sizes(dask_scheduler):
    """Runs on the scheduler: remember the largest result any worker held, and how many."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class StoredSizes(SchedulerPlugin):
        name = "corpusflow-test-stored-sizes"

        def __init__(self):
            self.largest = (0, "")
            self.count = 0

        def transition(self, key, start, finish, *args, **kwargs):
            ts = dask_scheduler.tasks.get(key)
            if finish == "memory" and ts is not None:
                self.count += 1
                self.largest = max(self.largest, (ts.nbytes, str(key)))

    dask_scheduler.add_plugin(StoredSizes(), name=StoredSizes.name)


def _stored_sizes(dask_scheduler):
    plugin = dask_scheduler.plugins.get("corpusflow-test-stored-sizes")
    dask_scheduler.remove_plugin(name="corpusflow-test-stored-sizes")
    return plugin.largest, plugin.count


def _expand(seed):
    """8 MB of strings from one element: what a read-and-clean step makes of a file."""
    for i in range(400):
        yield chr(0x4E00 + (seed * 400 + i) % 20000) * 20_000


def test_fusion_keeps_big_intermediates_off_the_workers(cluster, tmp_path):
    """Consecutive ParDos pass elements one by one inside one task (as on the local
    runner): a partition's 8 MB intermediate output is never a result a worker holds
    (without fusion each of the four partitions stored its whole list of strings)."""
    address, client, _ = cluster
    out = str(tmp_path / "total.json")

    def pipeline(p):
        (p | beam.Create([0, 1, 2, 3]) | beam.Reshuffle() | "Expand" >> beam.FlatMap(_expand)
         | "Len" >> beam.Map(len) | beam.CombineGlobally(sum) | beam.combiners.ToList()
         | beam.Map(_write(out)))

    client.run_on_scheduler(_watch_stored_sizes)
    try:
        _run(pipeline, address)
    finally:
        (largest, count) = client.run_on_scheduler(_stored_sizes)
    assert json.loads(Path(out).read_text()) == [4 * 400 * 20_000]
    assert count > 10  # the recorder saw the run's results
    assert largest[0] < 1 << 20, f"a worker held {largest[0]} bytes for {largest[1]}"


def test_side_input_derived_from_the_main_chain_is_not_fused(cluster, tmp_path):
    """A ParDo whose side input depends on its main input's producer cannot run in
    that producer's task (a cycle): it gets the main input materialised instead."""
    address, _, _ = cluster
    out = str(tmp_path / "rest.json")

    def pipeline(p):
        xs = p | beam.Create(list(range(10))) | beam.Reshuffle() | "Double" >> beam.Map(
            lambda x: 2 * x)
        total = xs | "Total" >> beam.CombineGlobally(sum)
        (xs | "Rest" >> beam.Map(lambda x, t: t - x, beam.pvalue.AsSingleton(total))
         | beam.combiners.ToList() | beam.Map(_write(out)))

    _run(pipeline, address)
    assert sorted(json.loads(Path(out).read_text())) == sorted(90 - 2 * x for x in range(10))


def test_shared_paths_are_the_absolute_local_paths_among_options(tmp_path):
    f = tmp_path / "vocab.txt"
    f.write_text("x")
    paths = dask_cluster.SharedPaths.from_values(
        [[f"{tmp_path}/*.jsonl", "gs://b/*.jsonl"], str(f), str(tmp_path), "relative/x", 3, None,
         "none", str(tmp_path / "missing.txt")])
    assert paths == dask_cluster.SharedPaths((f"{tmp_path}/*.jsonl",), (str(f),), (str(tmp_path),))


def test_partition_count_rule():
    mib = 1 << 20
    assert dask_runner.choose_partitions(0, 0, 2) == 8
    assert dask_runner.choose_partitions(0, 200 * mib, 2) == 13
    assert dask_runner.choose_partitions(0, 10 ** 15, 2) == dask_runner.MAX_AUTO_PARTITIONS
    assert dask_runner.choose_partitions(5, 10 ** 15, 64) == 5


# ------------------------------------------------------------ guards and flags
def test_untested_beam_version_is_refused_in_one_line():
    with pytest.raises(UsageError) as e:
        dask_runner.check_beam_version("2.78.0")
    msg = str(e.value)
    assert "\n" not in msg and "2.78.0" in msg and "2.77.0" in msg


def test_environment_mismatch_names_worker_and_package():
    driver = {"corpusflow": "0.1.0+abc", "apache-beam": "2.77.0", "python": "3.11.9"}
    workers = {"tcp://10.0.0.2:1": dict(driver, **{"apache-beam": "2.76.0"}),
               "tcp://10.0.0.3:1": dict(driver)}
    assert dask_cluster.environment_mismatches(driver, workers) == [
        "worker tcp://10.0.0.2:1 has apache-beam 2.76.0, the driver 2.77.0"]


def test_workers_report_the_drivers_environment(cluster):
    _, client, _ = cluster
    envs = client.run(dask_cluster.environment)
    assert len(envs) == 2
    assert "corpusflow" in envs[sorted(envs)[0]]  # the runner's distribution, with a digest
    assert dask_cluster.environment_mismatches(dask_cluster.environment(), envs) == []


@pytest.mark.parametrize("args,needle", [
    (["--dask_local_workers", "2"], "needs --runner DaskRunner"),
    (["--runner", "DaskRunner", "--dask_address", "127.0.0.1:8786"], "tcp://HOST:PORT"),
    (["--runner", "DaskRunner", "--dask_address", "tcp://h:1", "--dask_local_workers", "2"],
     "exclude each other"),
    (["--runner", "DaskRunner", "--dask_partitions", "-1"], "--dask_partitions"),
])
def test_cli_checks_dask_flags(args, needle):
    from pipelines.options import BuildOptions
    argv = ["--input", "/x/*.txt", "--output", "/tmp/o"] + args
    cli.parse(argv)
    with pytest.raises(UsageError, match=needle.replace("+", r"\+")):
        cli.validate(PipelineOptions(argv).view_as(BuildOptions))


def test_a_path_workers_cannot_see_is_refused(cluster, tmp_path):
    """The check the driver runs on the workers before the first stage."""
    _, client, _ = cluster
    ok = tmp_path / "seen.txt"
    ok.write_text("x")
    seen = client.run(dask_cluster.probe_paths, [],
                      [(str(tmp_path / "*.txt"), 1), (str(tmp_path / "*.txt"), 3)],
                      [str(ok), "/nonexistent/corpusflow/vocab.txt"])
    for problems in seen.values():
        assert problems == [f"{tmp_path}/*.txt (1 file(s), the driver sees 3)",
                            "/nonexistent/corpusflow/vocab.txt"]


# --------------------------------------------------------------- the full build
def test_full_build_on_dask_is_byte_identical(cluster, local_build, tmp_path):
    address, _, _ = cluster
    local_out, local_m = local_build
    out = tmp_path / "dask"
    m = build(out, *BUILD_ARGS, "--runner", "DaskRunner", "--dask_address", address)
    want = _outputs(local_out)
    assert sum(1 for k in want if k.startswith("tfrecords/")) >= 1
    assert len(want) > 40
    assert _outputs(out) == want
    assert _summary(m) == _summary(local_m)
    assert m["counters"]["read:records"] > 0
    # The same options but --runner/--dask_*/--output, which the manifest does not record.
    assert {k: v for k, v in m["config"].items() if k != "output"} == {
        k: v for k, v in local_m["config"].items() if k != "output"}


def test_worker_killed_mid_stage_gives_identical_output_or_clear_failure(
        cluster, local_build, tmp_path):
    """SIGKILL the worker process running a task of the segment stage (its nanny
    restarts it): the build must end identical to the local one, or raise, with
    no manifest written; never a silent partial result."""
    address, client, _ = cluster
    local_out, local_m = local_build
    out = tmp_path / "dask-kill"
    killed: dict = {}
    stop = threading.Event()

    def killer() -> None:
        # Wait for the dedup stage's manifest: the next pipeline is the segment stage.
        while not stop.is_set() and not (out / "stages" / "dedup.json").exists():
            time.sleep(0.02)
        while not stop.is_set() and not killed:
            # A task of the Segment ParDo itself (jieba loads, documents are segmented
            # and spilled): the worker dies with half-written files behind it.
            busy = {a: [k for k in ks if str(k).startswith("Segment_ParDo_SegmentDocs-")]
                    for a, ks in client.processing().items()}
            busy = {a: ks for a, ks in busy.items() if ks}
            if busy:
                addr = sorted(busy)[0]
                pids = client.run(os.getpid, workers=[addr])
                if addr in pids:
                    os.kill(pids[addr], signal.SIGKILL)
                    killed.update(addr=addr, pid=pids[addr], task=sorted(busy[addr])[0])
                    return
            time.sleep(0.01)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        m = build(out, *BUILD_ARGS, "--runner", "DaskRunner", "--dask_address", address)
        error = None
    except Exception as e:  # noqa: BLE001 - a clear failure is an accepted outcome
        m, error = None, e
    finally:
        stop.set()
        t.join(timeout=10)
    assert killed, "no task of the segment stage was seen running: nothing was killed"
    print(f"killed {killed}; outcome: {'identical build' if error is None else repr(error)}")
    if error is None:
        assert _outputs(out) == _outputs(local_out)
        assert _summary(m) == _summary(local_m)
    else:
        assert "DaskRunner" in str(error) or "KilledWorker" in type(error).__name__
        assert not (out / "manifest.json").exists()
    # The nanny brings the killed worker back: the cluster has two workers again.
    client.wait_for_workers(2, timeout=60)


def _die(x):
    os.kill(os.getpid(), signal.SIGKILL)
    return x


def test_a_task_that_keeps_killing_workers_fails_clearly(cluster, tmp_path):
    """Dask retries a task whose worker died; when it dies every time the run fails
    with a one-line DaskRunner error (never a result without that task's output)."""
    address, client, _ = cluster
    out = tmp_path / "never.json"

    def pipeline(p):
        (p | beam.Create([1]) | "Die" >> beam.Map(_die) | beam.combiners.ToList()
         | beam.Map(_write(str(out))))

    with pytest.raises(RuntimeError, match=r"DaskRunner: .* failed: workers died"):
        _run(pipeline, address)
    assert not out.exists()
    client.wait_for_workers(2, timeout=60)


def test_build_refuses_workers_with_another_beam_before_any_stage(cluster, monkeypatch, tmp_path):
    """The driver compares its environment with each worker's before submitting."""
    address, _, _ = cluster
    real = dask_cluster.environment()
    monkeypatch.setattr(dask_cluster, "environment",
                        lambda: dict(real, **{"apache-beam": "2.77.1"}))  # the driver only
    out = tmp_path / "refused"
    with pytest.raises(UsageError, match=r"^Dask workers differ from the driver: worker "
                                         r"tcp://127\.0\.0\.1:\d+ has apache-beam 2\.77\.0, "
                                         r"the driver 2\.77\.1; worker "):
        build(out, "--runner", "DaskRunner", "--dask_address", address)
    assert not list(out.glob("stages/clean/*")) and not (out / "docs").exists()
