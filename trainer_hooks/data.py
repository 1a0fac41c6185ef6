"""Input for the trainer: manifest checks, per-rank file sharding, and a resumable ``tf.data`` stream.

The stream of one rank is a pure function of (its files, seed, epoch): every epoch shuffles the file order with a
stateless op, interleaves the files deterministically and shuffles records with a seeded buffer. The input
position is therefore a single number, the records this rank has consumed, which maps to (epoch, offset in that
epoch's stream) through the manifest's per-shard counts; resuming rebuilds the stream at that epoch and skips
``offset`` serialized records (cheap: they are skipped before parsing).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
from typing import Any, Optional

import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # is_op_determinism_enabled has no public alias

from trainer_hooks.config import ModelConfig

# One definition of the features, shared with the writer (pipelines/build.py also puts it in the manifest).
from corpusflow.pretrain.example import feature_spec


class InputRefused(RuntimeError):
    """The data and the model/run disagree; training must not start."""


@dataclasses.dataclass(frozen=True)
class Shard:
    path: str
    count: int


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The ``"tfrecords"`` section of ``DIR/manifest.json``."""

    path: str
    max_seq_length: int
    max_predictions_per_seq: int
    vocab_size: int
    vocab_sha256: Optional[str]
    num_instances: int
    shards: tuple[Shard, ...]
    feature_spec: dict[str, Any]
    pair_task: str
    masking: Any
    seed: Optional[int]
    token_boundary: bool
    compression: str
    masked_lm_prob: float = 0.15
    vocab_file: Optional[str] = None

    @property
    def compression_type(self) -> str:
        return "GZIP" if str(self.compression).upper() == "GZIP" else ""


def _is_url(path: str) -> bool:
    return "://" in path


def _normalise(path: str) -> str:
    return path if _is_url(path) else os.path.realpath(path)


def _join(base: str, name: str) -> str:
    if _is_url(name) or os.path.isabs(name):
        return name
    return posixpath.join(base, name) if _is_url(base) else os.path.join(base, name)


def load_manifest(path: str) -> Manifest:
    """Read ``DIR/manifest.json``; shard names are resolved against ``DIR/tfrecords/`` unless absolute."""
    if not tf.io.gfile.exists(path):
        raise InputRefused(f"manifest {path} does not exist")
    with tf.io.gfile.GFile(path, "r") as f:
        doc = json.load(f)
    if "tfrecords" not in doc:
        raise InputRefused(f"manifest {path} has no 'tfrecords' section (were the TFRecords written?)")
    t = doc["tfrecords"]
    base = _join(posixpath.dirname(path) if _is_url(path) else os.path.dirname(os.path.abspath(path)), "tfrecords")
    try:
        shards = tuple(Shard(_normalise(_join(base, s["file"])), int(s["count"])) for s in t["shards"])
        return Manifest(
            path=path, max_seq_length=int(t["max_seq_length"]),
            max_predictions_per_seq=int(t["max_predictions_per_seq"]), vocab_size=int(t["vocab_size"]),
            vocab_sha256=t.get("vocab_sha256"), num_instances=int(t.get("num_instances", sum(s.count for s in shards))),
            shards=shards, feature_spec=t.get("feature_spec", {}), pair_task=t.get("pair_task", "sop"),
            masking=t.get("masking"), seed=t.get("seed"), token_boundary=bool(t.get("token_boundary", False)),
            compression=t.get("compression", "") or "", masked_lm_prob=float(t.get("masked_lm_prob", 0.15)),
            vocab_file=t.get("vocab_file"))
    except KeyError as e:
        raise InputRefused(f"manifest {path}: 'tfrecords' lacks required key {e}") from None


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_vocab_file(manifest: Manifest) -> Optional[str]:
    """The vocabulary the manifest names, if it can be found and matches the manifest's sha256; else None.

    The manifest records the path the pipeline was given: it is tried as is, then relative to the manifest.
    """
    name = manifest.vocab_file
    if not name:
        return None
    path = manifest.path
    base = posixpath.dirname(path) if _is_url(path) else os.path.dirname(os.path.abspath(path))
    for candidate in dict.fromkeys([name, _join(base, name)]):
        if tf.io.gfile.exists(candidate):
            if manifest.vocab_sha256 and sha256_file(candidate).lower() != str(manifest.vocab_sha256).lower():
                return None
            return candidate
    return None


def _normalise_spec(spec: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` from either ``feature_spec()``'s tuples or the manifest's JSON
    (``{"dtype": ..., "shape": [...]}`` objects, or ``[dtype, shape]`` pairs)."""
    out = {}
    for name, v in spec.items():
        dtype, shape = (v["dtype"], v["shape"]) if isinstance(v, dict) else (v[0], v[1])
        out[name] = (str(dtype), tuple(int(d) for d in shape))
    return out


def resolve_shards(pattern: str, manifest: Manifest) -> list[Shard]:
    """Files matching ``pattern`` (sorted), each with its record count from the manifest.

    Refuses an empty glob and files the manifest does not list (their counts are needed for the input position).
    """
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise InputRefused(f"--input {pattern!r} matches no files")
    counts = {s.path: s.count for s in manifest.shards}
    unknown = [f for f in files if _normalise(f) not in counts]
    if unknown:
        raise InputRefused(f"{len(unknown)} file(s) matched by --input are not shards of {manifest.path}, "
                           f"e.g. {unknown[0]}")
    return [Shard(f, counts[_normalise(f)]) for f in files]


def check_run(manifest: Manifest, config: ModelConfig, shards: list[Shard], world_size: int,
              max_seq_length: Optional[int] = None, max_predictions_per_seq: Optional[int] = None,
              vocab_file: Optional[str] = None) -> None:
    """Refuse (``InputRefused``) every disagreement between the data, the model config and the run.

    Collects all problems so one failed start lists everything to fix.
    """
    problems = []
    m = manifest
    if max_seq_length is not None and max_seq_length != m.max_seq_length:
        problems.append(f"--max_seq_length {max_seq_length} != manifest max_seq_length {m.max_seq_length}")
    if m.max_seq_length > config.max_position_embeddings:
        problems.append(f"manifest max_seq_length {m.max_seq_length} > config max_position_embeddings "
                        f"{config.max_position_embeddings}")
    if max_predictions_per_seq is not None and max_predictions_per_seq != m.max_predictions_per_seq:
        problems.append(f"--max_predictions_per_seq {max_predictions_per_seq} != manifest "
                        f"max_predictions_per_seq {m.max_predictions_per_seq}")
    if config.vocab_size != m.vocab_size:
        problems.append(f"config vocab_size {config.vocab_size} != manifest vocab_size {m.vocab_size}")
    pins = {}
    if config.vocab_sha256:
        pins["config vocab_sha256"] = config.vocab_sha256
    if vocab_file:
        pins[f"sha256 of --vocab_file {vocab_file}"] = sha256_file(vocab_file)
    for what, digest in pins.items():
        if not m.vocab_sha256:
            problems.append(f"{what} is given but the manifest has no vocab_sha256 to check it against")
        elif digest.lower() != str(m.vocab_sha256).lower():
            problems.append(f"{what} {digest} != manifest vocab_sha256 {m.vocab_sha256}")
    expected = _normalise_spec(feature_spec(m.max_seq_length, m.max_predictions_per_seq,
                                            token_boundary=m.token_boundary))
    if m.feature_spec and _normalise_spec(m.feature_spec) != expected:
        problems.append(f"manifest feature_spec {m.feature_spec} differs from this trainer's {expected}")
    if m.pair_task not in ("sop", "nsp", "none"):
        problems.append(f"manifest pair_task {m.pair_task!r} is not one of sop/nsp/none")
    if len(shards) < world_size:
        problems.append(f"{len(shards)} shard(s) for {world_size} ranks: every rank needs at least one file "
                        "(write more shards or use fewer processes)")
    empty = [s.path for s in shards if s.count <= 0]
    if empty:
        problems.append(f"{len(empty)} shard(s) have no records, e.g. {empty[0]}")
    if problems:
        raise InputRefused("refusing to start:\n  - " + "\n  - ".join(problems))


def rank_shards(shards: list[Shard], rank: int, world_size: int) -> list[Shard]:
    """File-level sharding: rank r reads files r, r+N, r+2N, ... of the sorted list."""
    return shards[rank::world_size]


@dataclasses.dataclass(frozen=True)
class InputPosition:
    """Where a rank's stream stands: ``epoch`` and ``offset`` records into that epoch's shuffled stream."""

    epoch: int
    offset: int

    @classmethod
    def from_consumed(cls, records_consumed: int, records_per_epoch: int) -> "InputPosition":
        return cls(records_consumed // records_per_epoch, records_consumed % records_per_epoch)


def parsing_features(manifest: Manifest) -> dict[str, tf.io.FixedLenFeature]:
    spec = feature_spec(manifest.max_seq_length, manifest.max_predictions_per_seq,
                        token_boundary=manifest.token_boundary)
    return {name: tf.io.FixedLenFeature(shape, tf.as_dtype(dtype)) for name, (dtype, shape) in spec.items()}


def make_dataset(manifest: Manifest, shards: list[Shard], batch_size: int, seed: int,
                 records_consumed: int = 0, shuffle_buffer: int = 1000, cycle_length: int = 4,
                 repeat: bool = True, masking: Optional["DynamicMasking"] = None) -> tf.data.Dataset:
    """Batches of parsed features for one rank's ``shards``, starting after ``records_consumed`` records.

    Deterministic for fixed arguments (stateless file shuffle, ``deterministic=True`` interleave, seeded record
    shuffle that does not reshuffle on re-iteration; the epoch number is mixed into every seed instead).
    With ``masking``, every batch is re-masked in the graph with a seed derived from its index in the stream,
    so masks differ between epochs yet a resumed run draws the same ones.
    """
    paths = tf.constant([s.path for s in shards])
    per_epoch = sum(s.count for s in shards)
    start = InputPosition.from_consumed(records_consumed, per_epoch)
    compression = manifest.compression_type
    cycle = max(1, min(cycle_length, len(shards)))

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(paths, seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        files = tf.data.Dataset.from_tensor_slices(order)
        records = files.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
                                   cycle_length=cycle, block_length=1, deterministic=True,
                                   num_parallel_calls=tf.data.AUTOTUNE)
        if shuffle_buffer > 1:
            records = records.shuffle(shuffle_buffer, seed=tf.cast(seed, tf.int64) * 1_000_003 + epoch,
                                      reshuffle_each_iteration=False)
        return records

    last_epoch = tf.int64.max if repeat else start.epoch + 1
    ds = tf.data.Dataset.range(start.epoch, last_epoch).flat_map(one_epoch).skip(start.offset)
    features = parsing_features(manifest)
    ds = ds.batch(batch_size, drop_remainder=True)
    # Under op determinism tf.data rewrites a parallel map that follows a stateful op (the seeded shuffle) into
    # a sequential one anyway, and TF 2.21's rewrite logs a spurious "E0000 ... NodeDef mentions attribute
    # use_unbounded_threadpool" line; asking for the sequential map directly avoids both the rewrite and the line.
    parallel = None if tf_config.is_op_determinism_enabled() else tf.data.AUTOTUNE
    map_kwargs = {"num_parallel_calls": parallel, "deterministic": True} if parallel else {}
    if masking is None:
        ds = ds.map(lambda s: tf.io.parse_example(s, features), **map_kwargs)
    else:
        if not manifest.token_boundary:
            raise InputRefused("dynamic masking needs shards written with token_boundary")
        ds = ds.enumerate(start=records_consumed // batch_size).map(
            lambda i, s: dynamic_mask(tf.io.parse_example(s, features), masking, tf.stack([tf.cast(seed, tf.int64),
                                                                                            i])),
            **map_kwargs)
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class DynamicMasking:
    """What in-graph whole-word masking needs from the vocabulary, and its rates."""

    mask_id: int
    cls_id: int
    sep_id: int
    replace_ids: tuple[int, ...]
    masked_lm_prob: float = 0.15
    per_word: bool = True  # one [MASK]/random/keep draw per word (the pipeline's default "per_word")

    @classmethod
    def from_vocab(cls, vocab_file: str, masked_lm_prob: float = 0.15, per_word: bool = True) -> "DynamicMasking":
        # The pipeline's own vocab reader and replacement set, so dynamic and static masking agree.
        from corpusflow.pretrain.masking import replacement_ids
        from corpusflow.tokenize.wordpiece import load_vocab
        vocab = load_vocab(vocab_file)
        return cls(vocab["[MASK]"], vocab["[CLS]"], vocab["[SEP]"], tuple(replacement_ids(vocab)), masked_lm_prob,
                   per_word)


def dynamic_mask(features: dict[str, tf.Tensor], masking: DynamicMasking, seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """Re-draw whole-word masked-LM targets for a parsed batch (``token_boundary`` required).

    1. Undo the static masking: put ``masked_lm_ids`` back at ``masked_lm_positions`` (a no-op for unmasked
       shards, whose weights are all 0).
    2. Words are runs of real, non-[CLS]/[SEP] tokens starting where ``token_boundary`` is 1. The budget is
       ``min(P, max(1, round(prob * maskable tokens)))`` as in ``corpusflow.pretrain.masking``.
    3. Words are visited in a random order and taken while they fit the budget; one that would overflow is
       skipped (BERT's rule). Chosen tokens become [MASK] 80%, a random id 10%, themselves 10%.
    ``seed`` is a stateless [2] seed: same seed, same masks.
    """
    ids = features["input_ids"]
    batch, length = tf.shape(ids)[0], ids.shape[1]
    num_pred = features["masked_lm_positions"].shape[1]
    positions = features["masked_lm_positions"]
    static = features["masked_lm_weights"] > 0
    rows = tf.broadcast_to(tf.range(tf.cast(batch, tf.int64))[:, None], tf.shape(positions))
    ids = tf.tensor_scatter_nd_update(ids, tf.boolean_mask(tf.stack([rows, positions], -1), static),
                                      tf.boolean_mask(features["masked_lm_ids"], static))

    maskable = (features["input_mask"] > 0) & (ids != masking.cls_id) & (ids != masking.sep_id)
    after_gap = tf.pad(tf.logical_not(maskable[:, :-1]), [[0, 0], [1, 0]], constant_values=True)
    # A maskable token after a non-maskable one always starts a word, whatever its boundary bit says.
    starts = maskable & ((features["token_boundary"] > 0) | after_gap)
    word = tf.cumsum(tf.cast(starts, tf.int32), axis=1)  # word k of a row has id k (1-based); 0 = none
    slots = length + 1
    flat_word = word + tf.range(batch)[:, None] * slots
    word_len = tf.reshape(tf.math.unsorted_segment_sum(tf.cast(maskable, tf.int32), flat_word, batch * slots),
                          [batch, slots])
    n_maskable = tf.reduce_sum(tf.cast(maskable, tf.float32), axis=1)
    budget = tf.minimum(num_pred, tf.maximum(1, tf.cast(tf.round(n_maskable * masking.masked_lm_prob), tf.int32)))

    def uniform(shape: Any, k: int) -> tf.Tensor:
        # Independent streams per purpose k (word order, 80/10/10 draw, random ids) from one batch seed.
        return tf.random.stateless_uniform(shape, seed=seed + tf.constant([k * 7919, 0], tf.int64))

    score = tf.where(word_len > 0, uniform([batch, slots], 1), 2.0)  # empty slots sort last
    order = tf.argsort(score, axis=1, stable=True)
    len_sorted = tf.gather(word_len, order, batch_dims=1)

    def take(state: tuple[tf.Tensor, tf.Tensor], lens: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        used, _ = state
        ok = (lens > 0) & (used + lens <= budget)
        return used + tf.where(ok, lens, 0), ok

    _, taken_sorted = tf.scan(take, tf.transpose(len_sorted),
                              initializer=(tf.zeros([batch], tf.int32), tf.zeros([batch], tf.bool)))
    taken_word = tf.gather(tf.transpose(taken_sorted), tf.argsort(order, axis=1), batch_dims=1)
    chosen = maskable & tf.gather(taken_word, word, batch_dims=1)

    draw = tf.gather(uniform([batch, slots], 2), word, batch_dims=1) if masking.per_word \
        else uniform([batch, length], 2)
    replace = tf.constant(masking.replace_ids, tf.int64)
    n_rep = tf.shape(replace, out_type=tf.int64)[0]
    random_ids = tf.gather(replace, tf.minimum(tf.cast(uniform([batch, length], 3) * tf.cast(n_rep, tf.float32),
                                                       tf.int64), n_rep - 1))
    new = tf.where(draw < 0.8, tf.constant(masking.mask_id, tf.int64), tf.where(draw >= 0.9, random_ids, ids))

    t = tf.range(length, dtype=tf.int64)[None, :]
    key, _ = tf.math.top_k(-tf.where(chosen, t, length + t), k=num_pred)  # the chosen positions, ascending
    key = -key
    valid = key < length
    pos = tf.where(valid, key, 0)
    out = dict(features)
    out["input_ids"] = tf.where(chosen, new, ids)
    out["masked_lm_positions"] = pos
    out["masked_lm_ids"] = tf.where(valid, tf.gather(ids, pos, batch_dims=1), 0)
    out["masked_lm_weights"] = tf.cast(valid, tf.float32)
    return out
