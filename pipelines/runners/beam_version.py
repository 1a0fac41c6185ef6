"""The one Beam version guard the runners share.

corpusflow's runners lean on Beam internals that change between releases
without notice: the local zygote runner intercepts ``FnApiRunner``'s private
``_default_environment`` (``runners/local.py``), the Dask runner reuses Beam's
DoFnRunner, overrides and StateSampler (``runners/dask_runner.py``). An
untested Beam is refused here, before any stage runs, in one line that says
what to install, instead of failing deep inside Beam.
"""

from __future__ import annotations

from typing import Optional, Sequence

import apache_beam as beam

from pipelines.errors import UsageError

#: Beam releases the runner adaptations were tested with (setup.py pins the last).
TESTED_BEAM_VERSIONS: tuple[str, ...] = ("2.77.0",)


class UntestedBeamError(UsageError):
    """A runner refused an apache-beam release it was not tested with (exit 2)."""


def check_beam_version(user: str, remedy: str = "", version: Optional[str] = None,
                       tested: Sequence[str] = TESTED_BEAM_VERSIONS) -> None:
    """Raise ``UntestedBeamError`` unless ``version`` (default: the installed Beam) is tested.

    ``user`` names what needs the guarantee ("--runner DaskRunner"); ``remedy``
    is appended after the install advice ("or use another runner").
    """
    version = version or beam.__version__
    if version in tested:
        return
    msg = (f"{user} is tested with apache-beam {', '.join(tested)} only and this is "
           f"{version}: install apache-beam=={tested[-1]}")
    raise UntestedBeamError(f"{msg} {remedy}" if remedy else msg)
