"""Runners corpusflow owns and tests (``dask_runner``: a Dask cluster, issue 19).

The local zygote runner still lives in ``pipelines.worker_zygote`` /
``pipelines.beam_util`` (moving it here is a separate redesign).
"""
