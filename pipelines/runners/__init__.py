"""Runners corpusflow owns and tests.

- ``local``: Beam's in-process FnApiRunner; multi_processing SDK workers forked from
  a pre-imported zygote (``worker_zygote``). The default (``--runner DirectRunner``).
- ``dask_runner``: a Dask cluster (``--runner DaskRunner``, issue 19).

``local.make_runner`` picks one from the options (``pipelines.beam_util.make_runner``
delegates to it).
"""
