"""tf.train.Example encoding: byte-exact against TensorFlow, parseable with the spec."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from corpusflow.pretrain.example import FEATURES, feature_spec, parse_example, serialize_instance
from corpusflow.pretrain.instances import Instance

tf = pytest.importorskip("tensorflow")


def make_instance(rng: random.Random, max_seq: int, max_pred: int, n: int | None = None) -> Instance:
    n = n or rng.randint(5, max_seq)
    k = rng.randint(1, min(max_pred, n - 2))
    la = rng.randint(1, n - 3) if n > 4 else 1
    seg = [0] * (la + 2) + [1] * (n - la - 2)
    pos = sorted(rng.sample(range(1, n - 1), k))
    return Instance(
        input_ids=[rng.randrange(0, 70_000) for _ in range(n)],   # > 2**16 ids too
        segment_ids=seg, masked_lm_positions=pos,
        masked_lm_ids=[rng.randrange(0, 21128) for _ in range(k)],
        next_sentence_label=rng.randint(0, 1),
        token_boundary=[rng.randint(0, 1) for _ in range(n)], sort_key=rng.getrandbits(64))


def tf_example(inst: Instance, max_seq: int, max_pred: int, token_boundary: bool):
    """The Example as BERT's create_pretraining_data.py builds it (TF API)."""
    n = len(inst.input_ids)
    pad = [0] * (max_seq - n)
    k = len(inst.masked_lm_positions)
    ppad = [0] * (max_pred - k)

    def ints(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))

    feats = {
        "input_ids": ints(inst.input_ids + pad),
        "input_mask": ints([1] * n + pad),
        "segment_ids": ints(inst.segment_ids + pad),
        "masked_lm_positions": ints(inst.masked_lm_positions + ppad),
        "masked_lm_ids": ints(inst.masked_lm_ids + ppad),
        "masked_lm_weights": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0] * k + ppad)),
        "next_sentence_labels": ints([inst.next_sentence_label]),
    }
    if token_boundary:
        feats["token_boundary"] = ints(inst.token_boundary + pad)
    return tf.train.Example(features=tf.train.Features(feature=feats))


def test_feature_spec():
    spec = feature_spec(128, 20)
    assert spec == {
        "input_ids": ("int64", [128]), "input_mask": ("int64", [128]),
        "segment_ids": ("int64", [128]), "masked_lm_positions": ("int64", [20]),
        "masked_lm_ids": ("int64", [20]), "masked_lm_weights": ("float32", [20]),
        "next_sentence_labels": ("int64", [1])}
    assert list(spec) == list(FEATURES)
    assert feature_spec(512, 80, token_boundary=True)["token_boundary"] == ("int64", [512])


@pytest.mark.parametrize("max_seq,max_pred,tb", [(128, 20, False), (128, 20, True), (512, 80, True),
                                                 (8, 2, False)])
def test_bytes_equal_tensorflow(max_seq, max_pred, tb):
    rng = random.Random(max_seq + tb)
    for i in range(200):
        inst = make_instance(rng, max_seq, max_pred, n=max_seq if i == 0 else None)
        ours = serialize_instance(inst, max_seq, max_pred, token_boundary=tb)
        ref = tf_example(inst, max_seq, max_pred, tb)
        assert tf.train.Example.FromString(ours) == ref
        # Map entries in sorted key order: identical to deterministic serialization.
        assert ours == ref.SerializeToString(deterministic=True)
        parsed = parse_example(ours)
        assert parsed["input_ids"][:len(inst.input_ids)] == inst.input_ids
        assert parsed["masked_lm_weights"] == [1.0] * len(inst.masked_lm_ids) + \
            [0.0] * (max_pred - len(inst.masked_lm_ids))


def test_parse_single_example_with_spec():
    rng = random.Random(1)
    inst = make_instance(rng, 32, 5, n=20)
    spec = feature_spec(32, 5, token_boundary=True)
    tf_spec = {k: tf.io.FixedLenFeature(shape, tf.int64 if dt == "int64" else tf.float32)
               for k, (dt, shape) in spec.items()}
    got = tf.io.parse_single_example(serialize_instance(inst, 32, 5, token_boundary=True), tf_spec)
    k = len(inst.masked_lm_positions)
    want = {
        "input_ids": inst.input_ids + [0] * 12, "input_mask": [1] * 20 + [0] * 12,
        "segment_ids": inst.segment_ids + [0] * 12,
        "masked_lm_positions": inst.masked_lm_positions + [0] * (5 - k),
        "masked_lm_ids": inst.masked_lm_ids + [0] * (5 - k),
        "masked_lm_weights": [1.0] * k + [0.0] * (5 - k),
        "next_sentence_labels": [inst.next_sentence_label],
        "token_boundary": inst.token_boundary + [0] * 12,
    }
    assert set(got) == set(want)
    for name, values in want.items():
        np.testing.assert_array_equal(got[name].numpy(), np.asarray(values))
        assert got[name].dtype == (tf.float32 if name == "masked_lm_weights" else tf.int64)


def test_rejects_oversized_instances():
    inst = make_instance(random.Random(2), 16, 3, n=16)
    with pytest.raises(ValueError):
        serialize_instance(inst, 15, 3)
    inst.masked_lm_positions = [1, 2, 3, 4]
    inst.masked_lm_ids = [5, 6, 7, 8]
    with pytest.raises(ValueError):
        serialize_instance(inst, 16, 3)


def test_faster_than_tensorflow():
    """Ours vs TF building the Example from lists and serializing it (what
    BERT's writer does); best of 3 rounds each, interleaved."""
    rng = random.Random(3)
    insts = [make_instance(rng, 128, 20, n=rng.randint(100, 128)) for _ in range(1000)]
    for i in insts:   # realistic id range (the random ones above include > 2**16)
        i.input_ids = [x % 21128 for x in i.input_ids]
    ours_t, tf_t = [], []
    for _ in range(3):
        t0 = time.process_time()
        ours = [serialize_instance(i, 128, 20) for i in insts]
        t1 = time.process_time()
        theirs = [tf_example(i, 128, 20, False).SerializeToString(deterministic=True) for i in insts]
        t2 = time.process_time()
        ours_t.append(t1 - t0)
        tf_t.append(t2 - t1)
    assert ours == theirs
    print(f"\nencode: ours {len(insts) / min(ours_t):.0f}/s, TF proto build+serialize "
          f"{len(insts) / min(tf_t):.0f}/s")
    assert min(ours_t) < min(tf_t)
