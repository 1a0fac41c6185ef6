"""Runners corpusflow owns and tests; the build reaches them through ``make_runner``.

- ``choose.make_runner(options, preload=())``: the runner the options name.
- ``local``: Beam's in-process FnApiRunner; multi_processing SDK workers forked from
  a pre-imported zygote (``worker_zygote`` driver side, ``zygote_server`` the
  process, ``zygote_protocol`` between them). The default (``--runner DirectRunner``).
- ``dask_runner``: a Dask cluster (``--runner DaskRunner``, issue 19).
- ``beam_version``: the guard that refuses a Beam release the runners were not tested with.

No module here imports or names an application module: what the zygote preloads
is the caller's list.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    # ``from pipelines.runners import make_runner`` without importing Beam here:
    # ``python -m pipelines.runners.zygote_server`` imports this package first and
    # must bind its socket before any heavy import.
    if name == "make_runner":
        from pipelines.runners.choose import make_runner
        return make_runner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
