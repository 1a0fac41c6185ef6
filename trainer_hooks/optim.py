"""Optimisers, learning-rate schedule, gradient utilities and dynamic loss scaling."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import keras
import tensorflow as tf

OPTIMIZERS = ("lamb", "adamw")


class WarmupPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """BERT-style schedule: linear warmup to ``peak`` over ``warmup_steps``, then polynomial decay to ``end``
    at ``total_steps`` (the decay is computed over the whole run, as in the original BERT/ALBERT code)."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, power: float = 1.0,
                 end: float = 0.0) -> None:
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)
        self.power, self.end = float(power), float(end)

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        frac = tf.minimum(step, float(self.total_steps)) / float(max(1, self.total_steps))
        decayed = (self.peak - self.end) * tf.pow(1.0 - frac, self.power) + self.end
        if self.warmup_steps <= 0:
            return decayed
        warm = self.peak * step / float(self.warmup_steps)
        return tf.where(step < float(self.warmup_steps), warm, decayed)

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "power": self.power, "end": self.end}


def no_decay(variable: keras.Variable) -> bool:
    """LayerNorm scales/offsets and biases are not weight-decayed (as in BERT/ALBERT)."""
    return variable.name in ("bias", "beta", "gamma") or variable.name.endswith("_bias")


def build_optimizer(name: str, variables: Sequence[keras.Variable], weight_decay: float = 0.01,
                    beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-6) -> keras.optimizers.Optimizer:
    """LAMB (``keras.optimizers.Lamb``) or AdamW, built for ``variables``.

    The learning rate is a plain variable the training loop assigns every step from the schedule: the schedule
    is driven by the loop's global step, which (unlike ``optimizer.iterations``) also counts skipped steps, so a
    run always ends at the scheduled final learning rate. Clipping is done by the loop, after the all-reduce.
    """
    if name == "lamb":
        opt = keras.optimizers.Lamb(learning_rate=0.0, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                                    weight_decay=weight_decay or None)
    elif name == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=0.0, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2,
                                     epsilon=epsilon)
    else:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    if weight_decay:
        # Must precede build(): Keras freezes the exclusion set when the optimizer is built.
        opt.exclude_from_weight_decay(var_list=[v for v in variables if no_decay(v)])
    opt.build(list(variables))
    return opt


def all_finite(grads: Iterable[tf.Tensor]) -> tf.Tensor:
    """Scalar bool: every gradient entry is finite."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])


class DynamicLossScale(tf.Module):
    """Loss scale for fp16: halve on a non-finite step, double after ``growth_interval`` finite steps in a row.

    With ``dynamic=False`` the scale stays at ``initial`` (1.0 for fp32/bf16, which need no scaling). Its state
    is two ``tf.Variable``s, so it goes into checkpoints and a resumed run continues with the same scale.
    """

    def __init__(self, initial: float = 2.0 ** 15, dynamic: bool = True, growth_interval: int = 2000,
                 factor: float = 2.0, minimum: float = 1.0) -> None:
        super().__init__(name="loss_scale")
        self.dynamic = dynamic
        self.growth_interval, self.factor, self.minimum = int(growth_interval), float(factor), float(minimum)
        self.scale = tf.Variable(float(initial), trainable=False, dtype=tf.float32, name="scale")
        self.good_steps = tf.Variable(0, trainable=False, dtype=tf.int64, name="good_steps")

    def update(self, finite: tf.Tensor) -> None:
        if not self.dynamic:
            return
        grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_interval)
        new_scale = tf.where(finite, tf.where(grow, self.scale * self.factor, self.scale),
                             tf.maximum(self.scale / self.factor, self.minimum))
        self.scale.assign(new_scale)
        self.good_steps.assign(tf.where(tf.logical_and(finite, tf.logical_not(grow)), self.good_steps + 1,
                                        tf.zeros_like(self.good_steps)))


def clip_by_global_norm(grads: list[tf.Tensor], clip_norm: Optional[float]) -> tuple[list[tf.Tensor], tf.Tensor]:
    """Global-norm clipping; returns (grads, norm before clipping). ``clip_norm`` None/<=0 only measures."""
    norm = tf.linalg.global_norm(grads)
    if clip_norm and clip_norm > 0:
        grads, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=norm)
    return list(grads), norm
