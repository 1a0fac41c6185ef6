"""Command-line options of ``python -m pipelines.build``, generated from the config classes.

Every option is defined once, as a field of the config dataclass that uses it
(``corpusflow.config.option``): the stage modules' classes, the core's
``CleanConfig`` / ``SegmentConfig`` / ``InstanceConfig``, and the run-level
classes below. ``BuildOptions`` (a Beam ``PipelineOptions``) adds them all, so
Beam's own flags (``--runner`` ...) pass through beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Optional

from apache_beam.options.pipeline_options import PipelineOptions

from corpusflow.config import Config, ConfigError, add_groups, option
from pipelines.stages import NAMES, REGISTRY

MAX_DASK_WORKERS = 1024
MAX_PARTITIONS = 100_000


@dataclasses.dataclass(frozen=True)
class RunConfig(Config):
    """Where the run reads and writes, and how it treats an existing output directory."""

    GROUP = "corpusflow: input and output"

    input: Optional[list] = option(
        None, "Input file glob (local or gs://), quoted so the shell does not expand it; repeat "
              "for several. Required.", kind="list", metavar="GLOB", hashed=False, path=True, manifest=True)
    output: Optional[str] = option(None, "Output directory (local or gs://), owned by one run. "
                                         "Required.", metavar="DIR", hashed=False, type=str, path=True,
        manifest=True)
    stop_after: Optional[str] = option(
        None, "Stop after this stage (default: tfrecords, or dedup with --vocab_file none).",
        choices=NAMES, nullable=True, hashed=False, type=str, manifest=True)
    resume: bool = option(False, "Skip stages whose finished output still matches the current "
                                 "config, inputs and checksums.", kind="flag", hashed=False)
    overwrite: bool = option(False, "Clear an output directory that holds files of a different "
                                    "run (refused otherwise).", kind="flag", hashed=False)
    allow_empty: bool = option(False, "Exit 0 even when the run keeps no document (exit 1 "
                                      "otherwise).", kind="flag", hashed=False)
    progress: bool = option(True, "Print stage progress to stderr.", kind="flag", hashed=False)

    def check(self) -> None:
        if not self.input:
            raise ConfigError("--input GLOB is required")
        if not self.output:
            raise ConfigError("--output DIR is required")


@dataclasses.dataclass(frozen=True)
class DaskConfig(Config):
    """Where a ``--runner DaskRunner`` build finds (or starts) its cluster."""

    GROUP = "corpusflow: Dask runner"

    dask_address: Optional[str] = option(
        None, "Scheduler of an existing Dask cluster (workers must share the paths).",
        metavar="tcp://HOST:PORT", hashed=False, type=str)
    dask_local_workers: int = option(
        0, "Start a local cluster of N one-thread worker processes for the run (0: one per CPU, "
           "unless --dask_address).", lo=0, hi=MAX_DASK_WORKERS, metavar="N", hashed=False)
    dask_partitions: int = option(
        0, "Partitions of every shuffle (0: max(4 x worker threads, input bytes / 16 MiB)).",
        lo=0, hi=MAX_PARTITIONS, metavar="N", hashed=False)

    def check(self) -> None:
        if self.dask_address and self.dask_local_workers:
            raise ConfigError("--dask_address and --dask_local_workers exclude each other")
        if self.dask_address and not re.fullmatch(r"(tcp|tls)://[^\s:/]+:\d{1,5}",
                                                  self.dask_address):
            raise ConfigError(f"--dask_address must look like tcp://HOST:PORT, "
                              f"got {self.dask_address!r}")

    def flags_set(self) -> list[str]:
        return [name for name, value in self.options().items() if value]


def option_classes() -> list[type]:
    """Every option class, in ``--help`` order: the run's, each stage's, the runner's."""
    classes: list[type] = [RunConfig]
    for stage in REGISTRY:
        classes.extend(c for c in stage.configs if c not in classes)
    classes.append(DaskConfig)
    return classes


class BuildOptions(PipelineOptions):
    """Every corpusflow flag; Beam's own flags (``--runner`` ...) pass through."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_groups(parser, option_classes())
