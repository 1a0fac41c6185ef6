"""Local runs: Beam's in-process FnApiRunner, with SDK workers forked from a zygote.

Beam 2.77's DirectRunner first tries to download the Prism runner binary (no
timeout on that path); the FnApiRunner never touches the network and honours
``--direct_num_workers`` / ``--direct_running_mode``. With
``--direct_running_mode multi_processing`` the SDK workers are forked from one
pre-imported zygote process (``pipelines.runners.worker_zygote``) instead of
each paying ~1 s of imports; ``CORPUSFLOW_ZYGOTE=0`` restores Beam's stock workers.
"""

from __future__ import annotations

from typing import Optional, Sequence

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms.environments import SubprocessSDKEnvironment

from pipelines.runners import worker_zygote


def make_runner(options: PipelineOptions, preload: Optional[Sequence[str]] = None):
    """The runner for ``options``: the zygote/in-process FnApiRunner for local runs,
    corpusflow's DaskRunner, a DataflowRunner instance, or Beam's runner by name.

    ``preload`` names zygote warm-ups (``worker_zygote.PRELOADS``).
    """
    name = options.view_as(StandardOptions).runner
    if name in (None, "DirectRunner", "FnApiRunner", "direct"):
        if (options.view_as(DirectOptions).direct_running_mode == "multi_processing"
                and worker_zygote.enabled()):
            runner = ZygoteFnApiRunner(preload=_zygote_preload(options) if preload is None
                                       else preload)
            # Start it now: its imports overlap with the driver building the
            # first pipeline. (If it cannot start: a warning, stock workers.)
            worker_zygote.shared(runner.preload)
            return runner
        return FnApiRunner()
    if name == "DaskRunner":
        # corpusflow's own Dask runner (pipelines/runners/dask_runner.py), not Beam's.
        from pipelines.runners.dask_runner import DaskRunner
        return DaskRunner()
    if name == "DataflowRunner":
        # An instance, so a --dry_run can report the job graph it built.
        from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
        return DataflowRunner()
    return name


def _zygote_preload(options: PipelineOptions) -> tuple[str, ...]:
    """Zygote warm-ups a build's flags call for (``worker_zygote.PRELOADS``).

    Not "jieba": JiebaSegmenter loads its dictionary into a private
    Tokenizer, so the zygote's global one would not be used (measured: no gain).
    """
    from pipelines.options import BuildOptions
    b = options.view_as(BuildOptions)
    return ("near_dedup",) if (b.near_dedup or b.decontaminate) else ()


class ZygoteFnApiRunner(FnApiRunner):
    """An FnApiRunner whose multi_processing SDK workers are forked by a zygote.

    Every other running mode, and multi_processing with the zygote disabled or
    unavailable, behaves exactly like FnApiRunner.
    """

    def __init__(self, preload: Sequence[str] = ()) -> None:
        self._zygote_env: Optional[SubprocessSDKEnvironment] = None
        self.preload = tuple(preload)
        super().__init__()

    # FnApiRunner.run_pipeline assigns Beam's stock worker command to
    # self._default_environment for multi_processing and uses it right away.
    # Intercepting that one assignment keeps all of run_pipeline (options,
    # worker count, warnings) Beam's own, instead of copying it here.
    @property  # type: ignore[override]
    def _default_environment(self):
        return self.__dict__["_corpusflow_default_environment"]

    @_default_environment.setter
    def _default_environment(self, env) -> None:
        zygote_env = self.__dict__.get("_zygote_env")
        if (zygote_env is not None and isinstance(env, SubprocessSDKEnvironment)
                and worker_zygote.STOCK_WORKER_MODULE in env.command_string):
            env = zygote_env
        self.__dict__["_corpusflow_default_environment"] = env

    def run_pipeline(self, pipeline, options):
        self._zygote_env = None
        if options.view_as(DirectOptions).direct_running_mode == "multi_processing":
            zygote = worker_zygote.shared(self.preload)  # None: stock workers
            if zygote is not None:
                self._zygote_env = SubprocessSDKEnvironment.from_command_string(zygote.command)
        try:
            return super().run_pipeline(pipeline, options)
        finally:
            self._zygote_env = None

    @staticmethod
    def close() -> None:
        """Stop the zygote now rather than at interpreter exit."""
        worker_zygote.close_shared()
