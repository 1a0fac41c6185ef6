"""Local runs: Beam's in-process FnApiRunner, with SDK workers forked from a zygote.

Beam 2.77's DirectRunner first tries to download the Prism runner binary (no
timeout on that path); the FnApiRunner never touches the network and honours
``--direct_num_workers`` / ``--direct_running_mode``. With
``--direct_running_mode multi_processing`` the SDK workers are forked from one
pre-imported zygote process (``worker_zygote``) instead of each paying ~1 s of
imports; ``CORPUSFLOW_ZYGOTE=0`` restores Beam's stock workers.

The adaptation to Beam is one private attribute, declared here
(``ADAPTED_ATTRIBUTE``) and guarded twice: ``ZygoteFnApiRunner`` refuses a Beam
release it was not tested with (``beam_version``), and
tests/test_worker_zygote.py checks that the pinned Beam still assigns and uses it.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms.environments import SubprocessSDKEnvironment

from pipelines.runners import worker_zygote
from pipelines.runners.beam_version import check_beam_version
from pipelines.runners.zygote_protocol import check_module_names

_LOGGER = logging.getLogger(__name__)

#: The FnApiRunner attribute the zygote runner intercepts. In the tested Beam,
#: ``FnApiRunner.__init__`` sets it and ``run_pipeline`` assigns it a
#: ``SubprocessSDKEnvironment`` running ``STOCK_WORKER_MODULE`` for
#: multi_processing, then passes it to ``pipeline.to_runner_api`` at once.
ADAPTED_ATTRIBUTE = "_default_environment"


def local_runner(options: PipelineOptions, preload: Sequence[str] = ()) -> FnApiRunner:
    """The FnApiRunner for ``options``; with multi_processing (and the zygote enabled)
    one whose workers fork from a zygote that imported ``preload`` (module names)."""
    if (options.view_as(DirectOptions).direct_running_mode == "multi_processing"
            and worker_zygote.enabled()):
        runner = ZygoteFnApiRunner(preload=preload)
        # Start it now: its imports overlap with the driver building the
        # first pipeline. (If it cannot start: a warning, stock workers.)
        worker_zygote.shared(runner.preload)
        return runner
    return FnApiRunner()


class ZygoteFnApiRunner(FnApiRunner):
    """An FnApiRunner whose multi_processing SDK workers are forked by a zygote.

    Every other running mode, and multi_processing with the zygote disabled or
    unavailable, behaves exactly like FnApiRunner. Raises ``UntestedBeamError``
    on a Beam release the interception below was not tested with.
    """

    def __init__(self, preload: Sequence[str] = ()) -> None:
        check_beam_version("the local runner's worker zygote",
                           f"or set {worker_zygote.ENV_SWITCH}=0 (Beam's stock workers)")
        self._zygote_env: Optional[SubprocessSDKEnvironment] = None
        self._swapped = False
        self.preload = check_module_names(preload)
        super().__init__()

    # FnApiRunner.run_pipeline assigns Beam's stock worker command to
    # self._default_environment (ADAPTED_ATTRIBUTE) for multi_processing and
    # uses it right away. Intercepting that one assignment keeps all of
    # run_pipeline (options, worker count, warnings) Beam's own, instead of
    # copying it here.
    @property  # type: ignore[override]
    def _default_environment(self):
        return self.__dict__["_corpusflow_default_environment"]

    @_default_environment.setter
    def _default_environment(self, env) -> None:
        zygote_env = self.__dict__.get("_zygote_env")
        if (zygote_env is not None and isinstance(env, SubprocessSDKEnvironment)
                and worker_zygote.STOCK_WORKER_MODULE in env.command_string):
            env = zygote_env
            self.__dict__["_swapped"] = True
        self.__dict__["_corpusflow_default_environment"] = env

    def run_pipeline(self, pipeline, options):
        self._zygote_env = None
        self._swapped = False
        if options.view_as(DirectOptions).direct_running_mode == "multi_processing":
            zygote = worker_zygote.shared(self.preload)  # None: stock workers
            if zygote is not None:
                self._zygote_env = SubprocessSDKEnvironment.from_command_string(zygote.command)
        try:
            result = super().run_pipeline(pipeline, options)
            if self._zygote_env is not None and not self._swapped:
                # Only slower, never wrong: Beam ran its own workers.
                _LOGGER.warning("Beam did not assign FnApiRunner.%s the stock worker command; "
                                "the worker zygote was not used", ADAPTED_ATTRIBUTE)
            return result
        finally:
            self._zygote_env = None

    @staticmethod
    def close() -> None:
        """Stop the zygote now rather than at interpreter exit."""
        worker_zygote.close_shared()
