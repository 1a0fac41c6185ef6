"""A fork server ("zygote") for the local runner's multi_processing SDK workers.

With ``--direct_running_mode multi_processing`` Beam's FnApiRunner starts every
SDK worker of every pipeline as ``python -m apache_beam.runners.worker.sdk_worker_main``.
Each of those pays ~1.1 s CPU of imports (apache_beam alone is ~0.9 s), and a
build runs 3-5 pipelines (one per stage), so on small inputs the fixed cost
hides the speed-up of a second worker.

Here one zygote per driver process imports the worker's modules once, freezes
the heap (``gc.freeze``) and then ``os.fork()``s a worker per request:

* ``Zygote`` (driver side) starts ``python -m pipelines.runners.worker_zygote --socket PATH``
  and hands Beam ``Zygote.command``: a tiny client that imports nothing heavy.
* The client (``_CLIENT``, run as ``python -I -S -c ...``) connects to the
  socket, sends its environment (Beam puts the control/logging endpoints and
  the pipeline options there), its working directory and its stdin/stdout/
  stderr (``SCM_RIGHTS``), then waits for the worker's exit code and exits with
  it. If the zygote cannot be reached before a worker was forked for it, it
  ``exec``s the stock worker instead, so a dead zygote costs time, not a build.
* The zygote forks; the child takes over the client's environment, cwd and
  stdio, runs ``sdk_worker_main.main`` and reports its exit code. A thread in
  the child watches the connection: if the client goes away (killed by Beam, a
  signal, ...), the worker terminates itself, as the stock worker would have.

Fork safety: the zygote's Python code is single-threaded and never creates a
gRPC channel or server (the first ones are made by the forked child), which is
what gRPC requires of a process that forks. Imports do start two native helper
threads (numpy's OpenBLAS pool and pyarrow's jemalloc background thread); both
libraries register fork handlers for exactly this (``multiprocessing``'s fork
start method with Beam imported is in the same position).

The module's top level imports only the standard library: the zygote binds
its socket before the heavy imports, so the driver knows at once whether it
started, while the imports overlap with the driver's own work.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import json
import logging
import os
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Optional, Sequence

_LOGGER = logging.getLogger(__name__)

# Set CORPUSFLOW_ZYGOTE=0 to run Beam's stock worker command instead.
ENV_SWITCH = "CORPUSFLOW_ZYGOTE"

# What Beam's FnApiRunner runs for a multi_processing worker (fn_runner.py).
STOCK_WORKER_MODULE = "apache_beam.runners.worker.sdk_worker_main"

# Imported by the zygote before it forks. The first is required (it is what the
# child runs); the rest are best effort: what the stage DoFns unpickle into.
REQUIRED_MODULE = STOCK_WORKER_MODULE
PRELOAD_MODULES: tuple[str, ...] = (
    "apache_beam.runners.worker.bundle_processor",
    "apache_beam.runners.worker.operations",
    "apache_beam.transforms.combiners",
    "pipelines.beam_util",
    "pipelines.stages",
    "pipelines.dedup_join",
    "pipelines.sharded_write",
    "corpusflow.clean.cleaner",
    "corpusflow.clean.sentences",
    "opencc",
    "corpusflow.pretrain.instances",
    "corpusflow.pretrain.example",
    "corpusflow.segment.registry",
    "corpusflow.segment.jieba_backend",  # imports jieba (not its dictionary): ~0.1 s
    "corpusflow.tokenize.wordpiece",
    "corpusflow.io.readers",
    "corpusflow.io.tfrecord",
)


def _preload_jieba() -> None:
    # jieba.initialize() loads the global tokenizer's dictionary (~0.45 s).
    # NB: JiebaSegmenter.setup() builds a *private* jieba.Tokenizer, so this
    # does not spare workers their own dictionary load; on the demo it made
    # the segment stage no faster, the first stage ~0.3 s slower (the zygote
    # is ready later) and the zygote ~60 MB larger. Opt-in only.
    import jieba
    jieba.initialize()
    importlib.import_module("corpusflow.segment.jieba_backend")


def _preload_near_dedup() -> None:
    # datasketch pulls in scipy (~0.4 s): only worth it when the build uses it.
    importlib.import_module("pipelines.near_dedup")


# Optional, named warm-ups the runner can ask for (``--preload NAME``).
PRELOADS = {"jieba": _preload_jieba, "near_dedup": _preload_near_dedup}

# How often the zygote checks that its driver is still alive (seconds).
_POLL_S = 0.5
# How long the driver waits for a fresh zygote to bind its socket (seconds).
_START_TIMEOUT_S = 20.0
_HEADER = struct.Struct("!I")

# The worker command Beam runs (``sh -c``): connect, hand over env/cwd/stdio,
# wait for "exit N". Runs under ``-I -S`` (no site, no user paths) so it starts
# in ~20 ms; it imports only builtin/stdlib modules. Messages from the zygote's
# child: "pid N\n" once forked, "exit N\n" when the worker is done.
_CLIENT = r"""
import json, os, signal, socket, struct, sys
def stock():
    sys.stderr.write("corpusflow zygote unreachable; running the stock SDK worker\n")
    os.execv(sys.executable, [sys.executable, "-m", "%(stock)s"])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
    body = json.dumps({"op": "spawn", "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    socket.send_fds(s, [struct.pack("!I", len(body))], [0, 1, 2])
    s.sendall(body)
except OSError:
    stock()
def stop(signum, frame):
    s.close()  # the worker watches the connection and terminates
    os._exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
buf = b""
while True:
    try:
        chunk = s.recv(4096)
    except OSError:
        chunk = b""
    if not chunk:
        break
    buf += chunk
    if b"exit " in buf and buf.endswith(b"\n"):
        break
lines = buf.decode("ascii", "replace").split()
if "pid" not in lines:
    stock()  # no worker was forked for us: nothing runs twice
if "exit" in lines:
    sys.exit(int(lines[lines.index("exit") + 1]))
sys.stderr.write("corpusflow zygote: worker ended without an exit code\n")
sys.exit(1)
""" % {"stock": STOCK_WORKER_MODULE}


def enabled() -> bool:
    """False when ``CORPUSFLOW_ZYGOTE`` is 0/false/no/off (use Beam's stock workers)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def supported() -> bool:
    """The zygote needs fork, AF_UNIX sockets with fd passing, and /proc (Linux)."""
    return (sys.platform.startswith("linux") and hasattr(os, "fork")
            and hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds"))


# ------------------------------------------------------------------ wire format
def _send_msg(sock: socket.socket, obj: Any) -> None:
    body = json.dumps(obj).encode()
    sock.sendall(_HEADER.pack(len(body)) + body)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-message")
        buf += chunk
    return buf


def _recv_request(sock: socket.socket) -> tuple[dict, list[int]]:
    """One request and the file descriptors that came with its header."""
    head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, 8)
    try:
        if not head:
            raise ConnectionError("connection closed before a request")
        head += _recv_exact(sock, _HEADER.size - len(head))
        (n,) = _HEADER.unpack(head)
        return json.loads(_recv_exact(sock, n)), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


# ------------------------------------------------------------------ driver side
class Zygote:
    """Driver-side handle: starts, queries and stops one zygote process."""

    def __init__(self, preload: Sequence[str] = ()) -> None:
        unknown = sorted(set(preload) - set(PRELOADS))
        if unknown:
            raise ValueError(f"unknown zygote preload(s) {unknown}; known: {sorted(PRELOADS)}")
        self.preload = tuple(preload)
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
        cmd = [sys.executable, "-m", "pipelines.runners.worker_zygote", "--socket", self.socket_path]
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
        return "exec %s -I -S -c %s %s" % (shlex.quote(sys.executable), shlex.quote(_CLIENT),
                                           shlex.quote(self.socket_path))

    def stats(self, timeout: float = 30.0) -> dict:
        """The zygote's counters: forks served, live children, threads, preloads."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.socket_path)
            body = json.dumps({"op": "stats"}).encode()
            s.sendall(_HEADER.pack(len(body)) + body)
            (n,) = _HEADER.unpack(_recv_exact(s, _HEADER.size))
            return json.loads(_recv_exact(s, n))

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
    is stopped at interpreter exit or by ``close_shared()``. A zygote that died
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


# ------------------------------------------------------------------ zygote side
def _native_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


class _Server:
    def __init__(self, listener: socket.socket, parent: int, preloaded: list[str]) -> None:
        self.listener = listener
        self.parent = parent
        self.preloaded = preloaded
        self.forks = 0
        self.children: set[int] = set()

    def serve(self) -> None:
        lifeline = sys.stdin.fileno()
        while True:
            ready, _, _ = select.select([self.listener, lifeline], [], [], _POLL_S)
            self._reap()
            # The driver is gone if it closed our stdin or we were re-parented.
            if lifeline in ready and not os.read(lifeline, 4096):
                return
            if os.getppid() != self.parent:
                return
            if self.listener in ready:
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    continue
                try:
                    self._handle(conn)
                except Exception:  # noqa: BLE001 - one bad client must not stop the zygote
                    _LOGGER.warning("worker zygote: request failed", exc_info=True)
                finally:
                    conn.close()

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.children.discard(pid)

    def _handle(self, conn: socket.socket) -> None:
        # A client that connects and says nothing must not stall the others.
        conn.settimeout(10.0)
        req, fds = _recv_request(conn)
        try:
            op = req.get("op")
            if op == "stats":
                self._reap()
                _send_msg(conn, {"pid": os.getpid(), "forks": self.forks,
                                 "children": sorted(self.children),
                                 "python_threads": threading.active_count(),
                                 "native_threads": _native_threads(),
                                 "preloaded": self.preloaded})
            elif op == "spawn":
                if len(fds) != 3:
                    raise ValueError(f"spawn needs stdin/stdout/stderr, got {len(fds)} fd(s)")
                conn.settimeout(None)
                # Flush so a child never re-emits the zygote's buffered output.
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    code = 70  # EX_SOFTWARE, if _child itself fails
                    try:
                        code = _child(conn, req, fds, self.listener)
                    finally:
                        os._exit(code)
                self.forks += 1
                self.children.add(pid)
            else:
                raise ValueError(f"unknown request {op!r}")
        finally:
            for fd in fds:
                os.close(fd)


def _exit_code(code: Any) -> int:
    """The process exit status Python gives ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1


def _child(conn: socket.socket, req: dict, fds: list[int], listener: socket.socket) -> int:
    """The forked worker: become the client's process, run the SDK harness."""
    listener.close()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # The client's stdio replace the zygote's (and its lifeline on stdin).
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    sys.argv = [STOCK_WORKER_MODULE]
    conn.sendall(f"pid {os.getpid()}\n".encode())

    done = threading.Event()

    def watch() -> None:
        # The client exits only after our "exit" line, so EOF before that means
        # it was killed or interrupted: terminate, as a stock worker would.
        try:
            conn.recv(1)
        except OSError:
            pass
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="zygote-client-watch", daemon=True).start()

    from apache_beam.runners.worker import sdk_worker_main
    try:
        sdk_worker_main.main(sys.argv)
        code = 0
    except SystemExit as e:
        code = _exit_code(e.code)
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - reported like an uncaught exception
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    done.set()
    try:
        conn.sendall(f"exit {code}\n".encode())
    except OSError:
        pass
    return code


def _bind(path: str) -> socket.socket:
    # Bind and listen under a temporary name, then rename: the driver waits for
    # ``path`` to exist, and a client never finds it not yet listening.
    tmp = path + ".tmp"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(tmp)
    s.listen(128)
    os.rename(tmp, path)
    return s


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m pipelines.runners.worker_zygote --socket PATH [--preload jieba]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--preload", action="append", default=[], choices=sorted(PRELOADS))
    args = ap.parse_args(argv)
    parent = os.getppid()
    # Ctrl-C reaches the whole process group: the driver decides when we stop
    # (lifeline), workers get their own default handler back after fork.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listener = _bind(args.socket)

    importlib.import_module(REQUIRED_MODULE)  # fatal if missing: clients fall back
    preloaded = [REQUIRED_MODULE]
    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
            preloaded.append(name)
        except Exception:  # noqa: BLE001 - a worker imports it itself if it needs it
            _LOGGER.warning("worker zygote: cannot preload %s", name, exc_info=True)
    for name in args.preload:
        try:
            PRELOADS[name]()
            preloaded.append(name)
        except Exception:  # noqa: BLE001
            _LOGGER.warning("worker zygote: preload %s failed", name, exc_info=True)
    if threading.active_count() != 1:
        _LOGGER.warning("worker zygote: a preload started Python threads %s; forking anyway",
                        threading.enumerate())
    # Move everything imported so far out of the collector's reach: children's
    # collections then never write to (and copy) these shared pages.
    gc.collect()
    gc.freeze()
    try:
        _Server(listener, parent, preloaded).serve()
    finally:
        # A driver that died cannot remove our private directory: do it here.
        listener.close()
        for remove, path in ((os.unlink, args.socket), (os.rmdir, os.path.dirname(args.socket))):
            try:
                remove(path)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
