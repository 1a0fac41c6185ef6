"""Errors the build reports as one line (``corpusflow: error: ...``) instead of a traceback,
and how a disk or permission fault is found behind a runner's exception."""

from __future__ import annotations

import errno
import os
import re
import shutil
from typing import Optional


class BuildError(ValueError):
    """A problem with the inputs or options, reported before any work starts (exit 2)."""


class UsageError(BuildError):
    """A command-line problem: an unknown word, a value out of range (exit 2)."""


class EnvironmentFault(RuntimeError):
    """The machine said no while the build ran: disk full, read-only or unwritable output,
    a missing bucket (exit 1; the run can be resumed once the cause is fixed)."""


class EmptyRunError(RuntimeError):
    """The run finished but kept nothing (exit 1 unless ``--allow_empty``)."""


FAULT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT,
                 errno.EFBIG, errno.EIO}


def fault_message(e: OSError, out: str) -> str:
    path = e.filename or out
    return f"cannot write {path}: {e.strerror or e} (errno {e.errno}); fix it and rerun with --resume"


def os_error_in(e: BaseException) -> Optional[OSError]:
    """The disk/permission error behind a runner's exception, if that is what it was.

    Beam re-raises a worker's exception wrapped (sometimes only as text), so the
    cause chain is walked and, failing that, the message is read.
    """
    seen = set()
    texts = []
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in FAULT_ERRNOS:
            return e
        texts.append(str(e))
        e = e.__cause__ or e.__context__
    return fault_in_text("\n".join(texts))


def fault_in_text(text: str) -> Optional[OSError]:
    m = re.search(r"\[Errno (\d+)\] ([^:'\n]+)(?:: '([^'\n]+)')?", text)
    if m and int(m.group(1)) in FAULT_ERRNOS:
        return OSError(int(m.group(1)), m.group(2), m.group(3))
    return None


def remove_temps(out: str) -> None:
    """Temp files a failed stage left (``_tmp-*`` folders, ``*.tmp-*`` files)."""
    if "://" in out:
        return
    for root, dirs, names in os.walk(out, topdown=True):
        for d in list(dirs):
            if d.startswith("_tmp") or d == "runs" and root.endswith("instances"):
                shutil.rmtree(os.path.join(root, d), ignore_errors=True)
                dirs.remove(d)
        for n in names:
            if ".tmp-" in n:
                try:
                    os.remove(os.path.join(root, n))
                except OSError:
                    pass
