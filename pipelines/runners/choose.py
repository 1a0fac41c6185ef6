"""``make_runner``: the one door from the build to a runner (``pipelines.runners.make_runner``)."""

from __future__ import annotations

from typing import Sequence

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.runners.local import local_runner


def make_runner(options: PipelineOptions, preload: Sequence[str] = ()):
    """The runner for ``options``: the in-process FnApiRunner (zygote workers for
    multi_processing) for local runs, corpusflow's DaskRunner, a DataflowRunner
    instance, or Beam's runner by name.

    ``preload``: module names the local zygote imports before it forks workers,
    i.e. what the pipeline's DoFns unpickle into. The caller knows them; none
    (the default) is correct, only each worker pays its own imports.
    """
    name = options.view_as(StandardOptions).runner
    if name in (None, "DirectRunner", "FnApiRunner", "direct"):
        return local_runner(options, preload)
    if name == "DaskRunner":
        # corpusflow's own Dask runner (pipelines/runners/dask_runner.py), not Beam's.
        from pipelines.runners.dask_runner import DaskRunner
        return DaskRunner()
    if name == "DataflowRunner":
        # An instance, so a --dry_run can report the job graph it built.
        from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
        return DataflowRunner()
    return name
