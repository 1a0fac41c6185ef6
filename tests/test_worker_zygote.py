"""The SDK worker zygote (``pipelines.runners.worker_zygote``): forked multi_processing workers.

A 2-worker multi_processing build must give the 1-worker build's bytes with every
worker forked by the zygote; the zygote must go away with its owner; a worker's
exit code (or its death) must reach Beam through the client.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipelines.runners import make_runner, worker_zygote
from tests.pipeline_util import ROOT, build

pytestmark = pytest.mark.skipif(not worker_zygote.supported(), reason="needs fork + AF_UNIX (Linux)")

DEMO_ARGS = ("--vocab_file", str(ROOT / "data" / "vocab" / "sample_vocab.txt"),
             "--max_seq_length", "128", "--max_predictions_per_seq", "20", "--dupe_factor", "2",
             "--num_shards", "8")
TWO_WORKERS = ("--direct_num_workers", "2", "--direct_running_mode", "multi_processing")


def _content_digests(root: Path) -> dict[str, str]:
    """sha256 of every docs/TFRecord/rejects shard; gzip shards after decompression
    (the gzip header's mtime is not content)."""
    out = {}
    for sub in ("docs", "tfrecords", "rejects"):
        for path in sorted(glob.glob(str(root / sub / "*"))):
            if os.path.isfile(path) and not os.path.basename(path).startswith("_"):
                data = Path(path).read_bytes()
                if path.endswith(".gz"):
                    data = gzip.decompress(data)
                out[os.path.relpath(path, root)] = hashlib.sha256(data).hexdigest()
    return out


def _dead(pid: int) -> bool:
    """Gone or a zombie (an orphan's reaper may be slow or absent in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


# What the fixture's zygote preloads: one module that imports, one that cannot.
PRELOAD = ("email.mime.text", "no_such_module_for_the_zygote")


@pytest.fixture(scope="module")
def zygote():
    z = worker_zygote.Zygote(preload=PRELOAD).start()
    yield z
    z.close()


def _worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONTROL_API_SERVICE_DESCRIPTOR", "LOGGING_API_SERVICE_DESCRIPTOR",
                        "PIPELINE_OPTIONS", "WORKER_ID")}
    env.update(extra)
    return env


# ------------------------------------------------------------------ the build
def test_two_forked_workers_give_the_one_worker_bytes(tmp_path):
    worker_zygote.close_shared()  # count only this build's forks
    one = build(tmp_path / "one", *DEMO_ARGS)
    two = build(tmp_path / "two", *DEMO_ARGS, *TWO_WORKERS)

    z = worker_zygote.current()
    assert z is not None, "the multi_processing build did not start a zygote"
    stats = z.stats()
    # Every stage pipeline started its 2 workers from the zygote; none fell back
    # to the stock command (which does not count as a fork).
    stages = list(two["stage_hashes"])
    assert len(stages) >= 3
    assert stats["forks"] >= 2 * len(stages)
    assert stats["python_threads"] == 1  # the zygote never runs a Python thread
    # The build names what its DoFns need; the zygote imported all of it.
    from pipelines.build import PRELOAD as BUILD_PRELOAD
    assert BUILD_PRELOAD and set(BUILD_PRELOAD) <= set(stats["preloaded"])
    assert stats["preload_failed"] == []

    digests = _content_digests(tmp_path / "one")
    assert any(k.startswith("tfrecords/") for k in digests)
    assert any(k.startswith("docs/") for k in digests)
    assert _content_digests(tmp_path / "two") == digests
    assert one["counters"] == two["counters"]


def test_switch_and_runner_choice(monkeypatch):
    mp = PipelineOptions(direct_num_workers=2, direct_running_mode="multi_processing")
    monkeypatch.setenv(worker_zygote.ENV_SWITCH, "0")
    assert not worker_zygote.enabled() and worker_zygote.shared() is None
    assert type(make_runner(mp, preload=("json",))) is FnApiRunner  # the stock path
    monkeypatch.setenv(worker_zygote.ENV_SWITCH, "1")
    assert type(make_runner(PipelineOptions())) is FnApiRunner  # in_memory
    with pytest.raises(ValueError, match="not module names"):
        worker_zygote.Zygote(preload=("json", "-m os"))


def test_zygote_preloads_the_callers_modules_best_effort(zygote):
    stats = zygote.stats()
    # Beam's worker first, then the caller's list in order; a module that does
    # not import is reported, not fatal (the zygote serves the tests below).
    assert stats["preloaded"][0] == worker_zygote.STOCK_WORKER_MODULE
    assert stats["preloaded"][-1] == PRELOAD[0]
    assert stats["preload_failed"] == [PRELOAD[1]]
    assert not any(m.startswith(("pipelines", "corpusflow")) for m in stats["preloaded"])


# ------------------------------------------------------------------ lifetime
def test_zygote_exits_when_closed():
    z = worker_zygote.Zygote().start()
    pid, sock_dir = z.pid, os.path.dirname(z.socket_path)
    assert z.stats()["pid"] == pid  # serving (imports done)
    z.close()
    assert _dead(pid) and not os.path.exists(sock_dir) and not z.alive()


def test_zygote_exits_when_its_driver_dies():
    script = textwrap.dedent("""
        import time
        from pipelines.runners import worker_zygote
        z = worker_zygote.Zygote().start()
        z.stats()  # wait until it serves
        print(z.pid, z.socket_path, flush=True)
        time.sleep(120)
    """)
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    pid = None
    try:
        pid_s, sock = driver.stdout.readline().split()
        pid = int(pid_s)
        assert not _dead(pid)
        driver.kill()  # SIGKILL: no atexit, no close()
        driver.wait()
        assert _wait(lambda: _dead(pid)), "zygote outlived its driver"
        assert not os.path.exists(os.path.dirname(sock))  # it cleaned up after itself
    finally:
        if driver.poll() is None:
            driver.kill()
        if pid is not None and not _dead(pid):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ exit codes
def test_failing_worker_gives_the_client_its_nonzero_code(zygote):
    forks = zygote.stats()["forks"]
    # No CONTROL_API_SERVICE_DESCRIPTOR: create_harness raises, the worker exits 1.
    r = subprocess.run(zygote.command, shell=True, env=_worker_env(),
                       stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 1
    assert "CONTROL_API_SERVICE_DESCRIPTOR" in r.stderr  # the worker's traceback, our stderr
    assert zygote.stats()["forks"] == forks + 1  # forked, not the stock fallback


def _start_hanging_worker(zygote) -> tuple[subprocess.Popen, int]:
    """A client whose forked worker waits (up to 60 s) for a control service that never comes."""
    before = set(zygote.stats()["children"])
    client = subprocess.Popen(zygote.command, shell=True, stderr=subprocess.DEVNULL,
                              env=_worker_env(CONTROL_API_SERVICE_DESCRIPTOR='url: "localhost:1"'))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = set(zygote.stats()["children"]) - before
        if new:
            (child,) = new
            return client, child
        time.sleep(0.05)
    client.kill()
    raise AssertionError("the zygote forked no worker for the client")


def test_worker_killed_without_exit_code_fails_the_client(zygote):
    client, child = _start_hanging_worker(zygote)
    try:
        os.kill(child, signal.SIGKILL)
        assert client.wait(timeout=10) != 0
    finally:
        if client.poll() is None:
            client.kill()


def test_signalled_client_takes_its_worker_down(zygote):
    client, child = _start_hanging_worker(zygote)
    try:
        client.send_signal(signal.SIGTERM)  # 'exec' in the command: this is the client
        assert client.wait(timeout=10) == 128 + signal.SIGTERM
        assert _wait(lambda: child not in zygote.stats()["children"]), "worker outlived its client"
    finally:
        if client.poll() is None:
            client.kill()


def test_client_falls_back_to_the_stock_worker(tmp_path):
    z = worker_zygote.Zygote()
    z.socket_path = str(tmp_path / "no-such-socket")
    r = subprocess.run(z.command, shell=True, env=_worker_env(), stderr=subprocess.PIPE,
                       text=True, timeout=60)
    assert "running the stock SDK worker" in r.stderr
    assert r.returncode == 1 and "CONTROL_API_SERVICE_DESCRIPTOR" in r.stderr
