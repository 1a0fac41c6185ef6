"""The cluster side of corpusflow's DaskRunner: clients, the environment check, shared paths.

Before a run's first pipeline the driver checks that every worker

* runs the same Python, apache-beam, dask and distributed, and the same
  distribution as the runner (its version and a digest of the source of every
  top-level package it ships: a stale checkout on one worker differs), and
* sees the run's local paths as the driver does: each absolute path among the
  pipeline options that is a glob matches as many files, each file exists, and
  a probe file the driver writes into each directory is read back.

Nothing here knows the application: the paths are whatever the options hold.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import threading
import uuid
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam

from pipelines.errors import UsageError


class DaskRunnerError(UsageError):
    """A Dask run refused before it starts (one line: version, cluster, paths)."""


# --------------------------------------------------------------- environment
def _distribution() -> str:
    """The installed distribution that ships this runner ('' when run from a bare checkout)."""
    top = __name__.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top) or []
    return dists[0] if dists else ""


def _source_digest(packages: Sequence[str]) -> str:
    """sha256 over the .py files of ``packages`` (paths relative to their parent folder)."""
    h = hashlib.sha256()
    for name in sorted(packages):
        spec = importlib.util.find_spec(name)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            base = Path(loc)
            for path in sorted(base.rglob("*.py")):
                h.update(str(path.relative_to(base.parent)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:12]


def environment() -> dict[str, str]:
    """What driver and workers must agree on (runs on each worker too)."""
    import dask
    import distributed
    env = {"apache-beam": beam.__version__, "python": platform.python_version(),
           "dask": dask.__version__, "distributed": distributed.__version__}
    dist = _distribution()
    top = __name__.split(".")[0]
    if dist:
        packages = sorted(name for name, ds in importlib.metadata.packages_distributions().items()
                          if dist in ds and importlib.util.find_spec(name) is not None)
        env[dist] = f"{importlib.metadata.version(dist)}+{_source_digest(packages)}"
    else:
        env[top] = f"unknown+{_source_digest([top])}"
    return env


def worker_environment() -> dict[str, str]:
    """``environment()`` as a worker computes it (with its own installation)."""
    return environment()


def environment_mismatches(driver: dict[str, str], workers: dict[str, dict[str, str]]) -> list[str]:
    """One phrase per differing package and worker (empty: all agree)."""
    out = []
    for addr, env in sorted(workers.items()):
        for name, want in driver.items():
            got = env.get(name)
            if got != want:
                out.append(f"worker {addr} has {name} {got}, the driver {want}")
    return out


# ------------------------------------------------------------------- paths
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclasses.dataclass(frozen=True)
class SharedPaths:
    """Local paths every worker must see as the driver does."""
    globs: tuple[str, ...] = ()  # each matches the same number of files everywhere
    files: tuple[str, ...] = ()  # each exists everywhere
    dirs: tuple[str, ...] = ()  # a probe file written here by the driver is read back

    @classmethod
    def from_values(cls, values: Iterable[Any]) -> "SharedPaths":
        """Every absolute local path among option values (strings or lists of them)."""
        globs: list[str] = []
        files: list[str] = []
        dirs: list[str] = []
        for v in values:
            for s in v if isinstance(v, (list, tuple)) else [v]:
                if not isinstance(s, str) or not s.startswith("/"):
                    continue
                if _GLOB_CHARS.search(s):
                    globs.append(s)
                elif os.path.isfile(s):
                    files.append(s)
                elif os.path.isdir(s):
                    dirs.append(s)
        return cls(tuple(globs), tuple(files), tuple(dirs))


def glob_count(pattern: str) -> int:
    from apache_beam.io.filesystems import FileSystems
    try:
        return len(FileSystems.match([pattern])[0].metadata_list)
    except Exception:  # noqa: BLE001 - a glob matching nothing raises on some filesystems
        return 0


def glob_bytes(patterns: Sequence[str]) -> int:
    """Total size of the files the patterns match."""
    from apache_beam.io.filesystems import FileSystems
    total = 0
    for g in patterns:
        try:
            total += sum(m.size_in_bytes for m in FileSystems.match([g])[0].metadata_list)
        except Exception:  # noqa: BLE001 - the pipeline reports bad globs itself
            pass
    return total


def probe_paths(probes: Sequence[tuple[str, bytes]], globs: Sequence[tuple[str, int]],
                files: Sequence[str]) -> list[str]:
    """Runs on a worker: the local paths it cannot see as the driver does.

    ``probes``: (file, token) the driver wrote; ``globs``: (pattern, driver's count).
    """
    bad = []
    for path, token in probes:
        try:
            with open(path, "rb") as f:
                if f.read() != token:
                    bad.append(f"{os.path.dirname(path)} (another directory of that name)")
        except OSError:
            bad.append(os.path.dirname(path))
    for g, n in globs:
        got = glob_count(g)
        if got != n:
            bad.append(f"{g} ({got} file(s), the driver sees {n})")
    bad += [f for f in files if not os.path.exists(f)]
    return bad


def check_cluster(client, paths: SharedPaths) -> None:
    """Same environment on every worker, and every shared path visible; else DaskRunnerError."""
    workers = client.run(worker_environment)
    if not workers:
        raise DaskRunnerError("the Dask cluster has no workers")
    bad = environment_mismatches(environment(), workers)
    if bad:
        raise DaskRunnerError("Dask workers differ from the driver: " + "; ".join(bad))
    probes: list[tuple[str, bytes]] = []
    files = list(paths.files)
    try:
        for d in paths.dirs:
            token = uuid.uuid4().hex.encode()
            path = os.path.join(d, f".dask-probe-{token.decode()[:12]}")
            try:
                with open(path, "wb") as f:
                    f.write(token)
                probes.append((path, token))
            except OSError:
                files.append(d)  # not writable here: existence is all that can be checked
        seen = client.run(probe_paths, probes, [(g, glob_count(g)) for g in paths.globs], files)
    finally:
        for path, _ in probes:
            if os.path.exists(path):
                os.remove(path)
    bad = [f"worker {addr} cannot see {p}" for addr, ps in sorted(seen.items()) for p in ps]
    if bad:
        raise DaskRunnerError(
            "local paths must be on a filesystem every Dask worker shares under the same "
            "name (or use gs://): " + "; ".join(bad[:5])
            + (f" ... ({len(bad)} in all)" if len(bad) > 5 else ""))


# ----------------------------------------------------------------- clients
_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def close_all() -> None:
    """Close every client (and local cluster) this process opened."""
    for key, client in list(_CLIENTS.items()):
        cluster = getattr(client, "_corpusflow_cluster", None)
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass
        _CLIENTS.pop(key, None)


atexit.register(close_all)


def get_client(address: Optional[str], local_workers: int):
    """A client (cached per process) of the cluster at ``address`` or of a new local one."""
    key = (address, local_workers)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is not None and client.status == "running":
            return client
        import distributed
        if address:
            try:
                client = distributed.Client(address, timeout=30, set_as_default=False)
            except OSError as e:
                raise DaskRunnerError(f"cannot reach the Dask scheduler at {address}: {e}") from None
        else:
            n = local_workers or os.cpu_count() or 1
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               host="127.0.0.1", dashboard_address=None)
            client = distributed.Client(cluster, set_as_default=False)
            client._corpusflow_cluster = cluster
        _CLIENTS[key] = client
        return client
