"""The zygote process: import once, freeze the heap, fork an SDK worker per request.

Run by ``worker_zygote.Zygote`` as ``python -m pipelines.runners.zygote_server
--socket PATH [--preload MODULE ...]``. It binds its socket first (the driver
waits for that, ~50 ms), then imports Beam's worker and the caller's preload
modules while the driver builds its pipeline; early clients wait in the backlog.

The child of each fork takes over the client's environment, cwd and stdio, runs
``sdk_worker_main.main`` and reports its exit code. A thread in the child
watches the connection: if the client goes away (killed by Beam, a signal,
...), the worker terminates itself, as the stock worker would have.

The top level imports only the standard library (see ``worker_zygote`` for why
forking here is safe).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import select
import signal
import socket
import sys
import threading
import traceback
from typing import Any, Optional

from pipelines.runners.zygote_protocol import STOCK_WORKER_MODULE, recv_request, send_msg

_LOGGER = logging.getLogger(__name__)

# Imported before the caller's preloads. The first is required (it is what the
# child runs); the rest are Beam's worker modules every pipeline unpickles into.
REQUIRED_MODULE = STOCK_WORKER_MODULE
BEAM_MODULES: tuple[str, ...] = (
    "apache_beam.runners.worker.bundle_processor",
    "apache_beam.runners.worker.operations",
    "apache_beam.transforms.combiners",
)

# How often the zygote checks that its driver is still alive (seconds).
_POLL_S = 0.5


def _native_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


class _Server:
    def __init__(self, listener: socket.socket, parent: int, preloaded: list[str],
                 failed: list[str]) -> None:
        self.listener = listener
        self.parent = parent
        self.preloaded = preloaded
        self.failed = failed
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
        req, fds = recv_request(conn)
        try:
            op = req.get("op")
            if op == "stats":
                self._reap()
                send_msg(conn, {"pid": os.getpid(), "forks": self.forks,
                                "children": sorted(self.children),
                                "python_threads": threading.active_count(),
                                "native_threads": _native_threads(),
                                "preloaded": self.preloaded, "preload_failed": self.failed})
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


def _preload(names: list[str]) -> tuple[list[str], list[str]]:
    """Import the required module (fatal: clients then fall back), then the rest best effort."""
    importlib.import_module(REQUIRED_MODULE)
    preloaded, failed = [REQUIRED_MODULE], []
    for name in BEAM_MODULES + tuple(names):
        try:
            importlib.import_module(name)
            preloaded.append(name)
        except Exception:  # noqa: BLE001 - a worker imports it itself if it needs it
            _LOGGER.warning("worker zygote: cannot preload %s", name, exc_info=True)
            failed.append(name)
    return preloaded, failed


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m pipelines.runners.zygote_server --socket PATH [--preload MODULE ...]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--preload", action="append", default=[], metavar="MODULE",
                    help="a module to import before forking (repeatable)")
    args = ap.parse_args(argv)
    parent = os.getppid()
    # Ctrl-C reaches the whole process group: the driver decides when we stop
    # (lifeline), workers get their own default handler back after fork.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listener = _bind(args.socket)
    preloaded, failed = _preload(args.preload)
    if threading.active_count() != 1:
        _LOGGER.warning("worker zygote: a preload started Python threads %s; forking anyway",
                        threading.enumerate())
    # Move everything imported so far out of the collector's reach: children's
    # collections then never write to (and copy) these shared pages.
    gc.collect()
    gc.freeze()
    try:
        _Server(listener, parent, preloaded, failed).serve()
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
