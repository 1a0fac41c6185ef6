"""Horovod data parallelism behind a small interface, with a single-process stand-in that needs no Horovod.

Keras 3 wraps every ``tf.Variable`` in a ``keras.Variable``; Horovod's TF API needs the underlying
``tf.Variable`` (``v.value``), otherwise it fails with ``'Variable' object has no attribute 'ref'``. We also avoid
``horovod.tensorflow.keras.DistributedOptimizer``, which with Keras 3 silently does not average gradients: the
training loop all-reduces through ``hvd.DistributedGradientTape`` instead.
"""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf


def tf_variable(v: Any) -> tf.Variable:
    """The ``tf.Variable`` behind a ``keras.Variable`` (identity for a ``tf.Variable``)."""
    inner = getattr(v, "value", None)
    return inner if isinstance(inner, tf.Variable) else v


class Single:
    """One process, no Horovod."""

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    enabled = False

    def wrap_tape(self, tape: tf.GradientTape) -> tf.GradientTape:
        return tape

    def average(self, tensor: tf.Tensor) -> tf.Tensor:
        return tensor

    def broadcast_variables(self, variables: Sequence[Any]) -> None:
        pass


class Horovod(Single):
    """Horovod (Gloo or MPI) data parallelism. Import is deferred so single-process runs never need it."""

    enabled = True

    def __init__(self) -> None:
        try:
            import horovod.tensorflow as hvd
        except ImportError as e:  # pragma: no cover - exercised only without horovod
            raise SystemExit("--horovod given but horovod is not installed: run scripts/build_horovod.sh "
                             f"({e})") from None
        hvd.init()
        self.hvd = hvd
        self.rank, self.size = hvd.rank(), hvd.size()
        self.local_rank, self.local_size = hvd.local_rank(), hvd.local_size()

    def wrap_tape(self, tape: tf.GradientTape) -> tf.GradientTape:
        # sparse_as_dense: the tied word embedding gets gather (sparse) + matmul (dense) gradients; dense
        # all-reduce is both simpler and, for a 21k x 128 table, cheaper than allgathering slices.
        return self.hvd.DistributedGradientTape(tape, sparse_as_dense=True)

    def average(self, tensor: tf.Tensor) -> tf.Tensor:
        return self.hvd.allreduce(tensor, op=self.hvd.Average)

    def broadcast_variables(self, variables: Sequence[Any]) -> None:
        self.hvd.broadcast_variables([tf_variable(v) for v in variables], root_rank=0)


def make(use_horovod: bool) -> Single:
    return Horovod() if use_horovod else Single()
