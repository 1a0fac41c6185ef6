"""What the driver, the worker client and the zygote say to each other.

Requests are a 4-byte length and a JSON body on an AF_UNIX socket: ``{"op":
"stats"}`` (answered the same way) or ``{"op": "spawn", "env", "cwd"}`` with the
client's stdin/stdout/stderr passed alongside (``SCM_RIGHTS``), answered by
the plain text lines "pid N" once forked and "exit N" when the worker is done.

Standard library only: the zygote imports this before it binds its socket.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
from typing import Any, Sequence

# What Beam's FnApiRunner runs for a multi_processing worker (fn_runner.py).
STOCK_WORKER_MODULE = "apache_beam.runners.worker.sdk_worker_main"

HEADER = struct.Struct("!I")

_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")

# The worker command Beam runs (``sh -c``): connect, hand over env/cwd/stdio,
# wait for "exit N". Runs under ``-I -S`` (no site, no user paths) so it starts
# in ~20 ms; it imports only builtin/stdlib modules. If the zygote cannot be
# reached before a worker was forked for it, it ``exec``s the stock worker: a
# dead zygote costs time, not a build, and nothing runs twice.
CLIENT = r"""
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


def check_module_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple; ValueError naming any that is not a dotted module name."""
    bad = [n for n in names if not isinstance(n, str) or not _MODULE_NAME.match(n)]
    if bad:
        raise ValueError(f"zygote preload: not module names: {bad}")
    return tuple(names)


def send_msg(sock: socket.socket, obj: Any) -> None:
    body = json.dumps(obj).encode()
    sock.sendall(HEADER.pack(len(body)) + body)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-message")
        buf += chunk
    return buf


def recv_msg(sock: socket.socket) -> Any:
    (n,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    return json.loads(recv_exact(sock, n))


def recv_request(sock: socket.socket) -> tuple[dict, list[int]]:
    """One request and the file descriptors that came with its header."""
    head, fds, _flags, _addr = socket.recv_fds(sock, HEADER.size, 8)
    try:
        if not head:
            raise ConnectionError("connection closed before a request")
        head += recv_exact(sock, HEADER.size - len(head))
        (n,) = HEADER.unpack(head)
        return json.loads(recv_exact(sock, n)), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
