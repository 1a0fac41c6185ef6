"""A fork server ("zygote") for the local runner's multi_processing SDK workers.

With ``--direct_running_mode multi_processing`` Beam's FnApiRunner starts every
SDK worker of every pipeline as ``python -m apache_beam.runners.worker.sdk_worker_main``.
Each of those pays ~1.1 s CPU of imports (apache_beam alone is ~0.9 s), and a
build runs 3-5 pipelines (one per stage), so on small inputs the fixed cost
hides the speed-up of a second worker.

Here one zygote per driver process imports the worker's modules once, freezes
the heap (``gc.freeze``) and then ``os.fork()``s a worker per request:

* ``Zygote`` (this module, driver side) starts ``python -m pipelines.runners.zygote_server
  --socket PATH [--preload MODULE ...]`` and hands Beam ``Zygote.command``: a tiny
  client (``zygote_protocol.CLIENT``) that imports nothing heavy.
* The client connects to the socket, sends its environment (Beam puts the
  control/logging endpoints and the pipeline options there), its working
  directory and its stdin/stdout/stderr, then waits for the worker's exit code
  and exits with it; an unreachable zygote makes it ``exec`` the stock worker.
* The zygote (``zygote_server``) forks; the child becomes the client's process
  and runs ``sdk_worker_main.main``.

What the zygote imports besides Beam's worker is the caller's choice
(``preload``: module names, best effort): this package never names an
application module, so the build says what its DoFns unpickle into.

Fork safety: the zygote's Python code is single-threaded and never creates a
gRPC channel or server (the first ones are made by the forked child), which is
what gRPC requires of a process that forks. Imports do start two native helper
threads (numpy's OpenBLAS pool and pyarrow's jemalloc background thread); both
libraries register fork handlers for exactly this (``multiprocessing``'s fork
start method with Beam imported is in the same position).
"""

from __future__ import annotations

import atexit
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Optional, Sequence

from pipelines.runners.zygote_protocol import (CLIENT, STOCK_WORKER_MODULE, check_module_names,
                                               recv_msg, send_msg)

__all__ = ["ENV_SWITCH", "STOCK_WORKER_MODULE", "Zygote", "close_shared", "current", "enabled",
           "shared", "supported"]

_LOGGER = logging.getLogger(__name__)

# Set CORPUSFLOW_ZYGOTE=0 to run Beam's stock worker command instead.
ENV_SWITCH = "CORPUSFLOW_ZYGOTE"

# How long the driver waits for a fresh zygote to bind its socket (seconds).
_START_TIMEOUT_S = 20.0


def enabled() -> bool:
    """False when ``CORPUSFLOW_ZYGOTE`` is 0/false/no/off (use Beam's stock workers)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def supported() -> bool:
    """The zygote needs fork, AF_UNIX sockets with fd passing, and /proc (Linux)."""
    return (sys.platform.startswith("linux") and hasattr(os, "fork")
            and hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds"))


# ------------------------------------------------------------------ driver side
class Zygote:
    """Driver-side handle: starts, queries and stops one zygote process."""

    def __init__(self, preload: Sequence[str] = ()) -> None:
        """``preload``: modules the zygote imports (best effort) after Beam's worker."""
        self.preload = check_module_names(preload)
        self._dir: Optional[str] = None
        self._proc: Optional[subprocess.Popen] = None
        self.socket_path = ""

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "Zygote":
        """Start the process and wait (~50 ms) until its socket is bound.

        The heavy imports happen after that, while the driver builds its
        pipeline; early workers wait in the socket's backlog. Raises OSError or
        RuntimeError if the zygote cannot start.
        """
        # A private 0700 directory: only this user can connect to the socket.
        self._dir = tempfile.mkdtemp(prefix="corpusflow-zygote-")
        self.socket_path = os.path.join(self._dir, "sock")
        cmd = [sys.executable, "-m", "pipelines.runners.zygote_server", "--socket", self.socket_path]
        for name in self.preload:
            cmd += ["--preload", name]
        try:
            # stdin is the lifeline: EOF there (this process died) stops the
            # zygote. stdout/stderr are ours, like a stock worker's.
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
            deadline = time.monotonic() + _START_TIMEOUT_S
            while not os.path.exists(self.socket_path):
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker zygote did not start ({' '.join(cmd)})")
                time.sleep(0.005)
        except BaseException:
            self.close()
            raise
        return self

    @property
    def command(self) -> str:
        """The SDK worker command line (run by Beam with ``sh -c``)."""
        return "exec %s -I -S -c %s %s" % (shlex.quote(sys.executable), shlex.quote(CLIENT),
                                           shlex.quote(self.socket_path))

    def stats(self, timeout: float = 30.0) -> dict:
        """The zygote's counters: forks served, live children, threads, and the
        modules it imported (``preloaded``) or failed to (``preload_failed``)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.socket_path)
            send_msg(s, {"op": "stats"})
            return recv_msg(s)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the zygote (running workers are separate processes and go on)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin:
                proc.stdin.close()
            # SIGTERM (default action) rather than waiting for the lifeline: a
            # zygote still importing would only look at it when done.
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


_SHARED: Optional[Zygote] = None
_SHARED_LOCK = threading.Lock()
_UNAVAILABLE = False


def shared(preload: Sequence[str] = ()) -> Optional[Zygote]:
    """This process's zygote, started on first use; None means "use the stock workers".

    One zygote serves every pipeline the process runs (a build's stages); it
    is stopped at interpreter exit or by ``close_shared()``; ``preload`` counts
    only when one is started (a running zygote is kept even if a later caller
    names other modules: its workers import those themselves). A zygote that died
    is replaced. If none can be started (not Linux, no AF_UNIX, a failure),
    a warning is logged and this and every later call return None.
    """
    global _SHARED, _UNAVAILABLE
    if not enabled() or _UNAVAILABLE:  # once one failed to start, stop trying
        return None
    with _SHARED_LOCK:
        if _SHARED is not None and _SHARED.alive():
            return _SHARED
        if _SHARED is not None:
            _LOGGER.warning("SDK worker zygote (pid %s) died; starting a new one", _SHARED.pid)
            _SHARED.close()
            _SHARED = None
        if not supported():
            reason = "this platform has no fork/AF_UNIX fd passing"
        else:
            try:
                _SHARED = Zygote(preload).start()
                return _SHARED
            except (OSError, RuntimeError) as e:
                reason = str(e)
        _UNAVAILABLE = True
        _LOGGER.warning("SDK worker zygote unavailable (%s); multi_processing workers "
                        "start the stock way (slower start-up)", reason)
        return None


def current() -> Optional[Zygote]:
    """The running shared zygote, if any (without starting one)."""
    return _SHARED if _SHARED is not None and _SHARED.alive() else None


def close_shared() -> None:
    """Stop this process's shared zygote (also done at interpreter exit)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is not None:
            _SHARED.close()
            _SHARED = None


atexit.register(close_shared)


