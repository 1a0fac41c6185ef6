"""The stages of a build, in order: the one list the driver, ``--stop_after``,
``--resume``, the config hashes and the manifest read (see ``base.Stage``)."""

from pipelines.stages import clean, dedup, instances, segment, tfrecords
from pipelines.stages.base import Ctx, Stage

REGISTRY: tuple[Stage, ...] = (clean.STAGE, dedup.STAGE, segment.STAGE, instances.STAGE,
                               tfrecords.STAGE)
NAMES: tuple[str, ...] = tuple(s.name for s in REGISTRY)

__all__ = ["REGISTRY", "NAMES", "Stage", "Ctx"]
