"""The pretraining ``tf.train.Example`` schema and a hand-rolled encoder.

One definition shared by the writer (``serialize_instance``) and the trainer
(``feature_spec``), so the two cannot drift. No TensorFlow import: the trainer
turns ``feature_spec`` into ``tf.io.FixedLenFeature`` itself.

The schema is BERT/ALBERT's ``create_pretraining_data.py`` output, zero-padded
the same way: ``input_mask`` is 1 for real tokens, ``masked_lm_weights`` 1.0 for
real predictions, everything else pads with 0. ``next_sentence_labels``: SOP
1 = swapped, NSP 1 = random next. ``token_boundary`` (ALBERT) is optional.

``serialize_instance`` writes the protobuf wire format directly (packed
varints / packed little-endian floats, map entries in sorted key order), which
is byte-identical to TF's ``SerializeToString(deterministic=True)`` and several
times faster than building the proto (see tests/test_example.py).
"""

from __future__ import annotations

import struct
from operator import itemgetter
from typing import Any, Sequence

# name -> (dtype, length source). Order is the canonical feature order.
FEATURES: dict[str, tuple[str, str]] = {
    "input_ids": ("int64", "max_seq_length"),
    "input_mask": ("int64", "max_seq_length"),
    "segment_ids": ("int64", "max_seq_length"),
    "masked_lm_positions": ("int64", "max_predictions_per_seq"),
    "masked_lm_ids": ("int64", "max_predictions_per_seq"),
    "masked_lm_weights": ("float32", "max_predictions_per_seq"),
    "next_sentence_labels": ("int64", "1"),
}
OPTIONAL_FEATURES: dict[str, tuple[str, str]] = {
    "token_boundary": ("int64", "max_seq_length"),
}


def feature_spec(max_seq_length: int, max_predictions_per_seq: int,
                 token_boundary: bool = False) -> dict[str, tuple[str, list[int]]]:
    """``{name: (dtype, shape)}`` for fixed-length parsing, e.g.
    ``tf.io.FixedLenFeature(shape, tf.int64 if dtype == "int64" else tf.float32)``."""
    sizes = {"max_seq_length": max_seq_length,
             "max_predictions_per_seq": max_predictions_per_seq, "1": 1}
    feats = dict(FEATURES)
    if token_boundary:
        feats.update(OPTIONAL_FEATURES)
    return {name: (dtype, [sizes[src]]) for name, (dtype, src) in feats.items()}


# -- protobuf wire format ---------------------------------------------------

def _varint_slow(v: int) -> bytes:
    if v < 0:
        v += 1 << 64  # int64 is encoded as its 64-bit two's complement
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# Pre-encoded varints for 0 .. 2**16-1 (token ids of any common vocab), in a
# dict so that a negative or too large value is a KeyError (then the slow path),
# never a silently wrong list index.
_TABLE_SIZE = 1 << 16
_VARINTS: dict[int, bytes] = dict(enumerate(
    [bytes((i,)) for i in range(1 << 7)]
    + [bytes((i & 0x7F | 0x80, i >> 7)) for i in range(1 << 7, 1 << 14)]
    + [bytes((i & 0x7F | 0x80, (i >> 7) & 0x7F | 0x80, i >> 14)) for i in range(1 << 14, _TABLE_SIZE)]
))


def _varint(v: int) -> bytes:
    b = _VARINTS.get(v)
    return b if b is not None else _varint_slow(int(v))


_ONE_F32 = struct.pack("<f", 1.0)
_ZERO_F32 = b"\x00" * 4


def _entry(key: bytes, kind_tag: bytes, packed: bytes) -> bytes:
    """One ``Features.feature`` map entry, framed as a field-1 element."""
    v = _VARINTS
    # XxxList { repeated value = 1 [packed] }; an empty list has no field.
    n = len(packed)
    lst = (b"\x0a" + (v.get(n) or _varint_slow(n)) + packed) if n else b""
    n = len(lst)
    feat = kind_tag + (v.get(n) or _varint_slow(n)) + lst        # Feature { oneof kind }
    n = len(feat)
    entry = _KEY_PREFIX[key] + (v.get(n) or _varint_slow(n)) + feat  # map entry {key, value}
    n = len(entry)
    return b"\x0a" + (v.get(n) or _varint_slow(n)) + entry


_INT64 = b"\x1a"   # Feature.int64_list = 3, length-delimited
_FLOAT = b"\x12"   # Feature.float_list = 2, length-delimited
_K = {name: name.encode() for name in list(FEATURES) + list(OPTIONAL_FEATURES)}
# Map entry prefix per key: key field (1) then the value field tag (2).
_KEY_PREFIX = {k: b"\x0a" + _varint_slow(len(k)) + k + b"\x12" for k in _K.values()}
# Cached whole entries: input_mask by (tokens, padding), masked_lm_weights by
# (predictions, padding), next_sentence_labels by label. Small: a few hundred.
_MASK_ENTRIES: dict[tuple[int, int], bytes] = {}
_WEIGHT_ENTRIES: dict[tuple[int, int], bytes] = {}
_LABEL_ENTRIES: dict[int, bytes] = {}


# Everything of a map entry before its packed payload, by (key, payload
# length): the four length-prefixed headers of ``_entry`` depend only on those
# two, and there are a few hundred combinations. ``serialize_instance`` then
# emits header + payload pieces and joins the whole message once.
_HEADERS: dict[tuple[bytes, bytes, int], bytes] = {}


def _header(key: bytes, kind_tag: bytes, n: int) -> bytes:
    h = _HEADERS.get((key, kind_tag, n))
    if h is None:
        h = _entry(key, kind_tag, b"\x00" * n)[:-n] if n else _entry(key, kind_tag, b"")
        _HEADERS[(key, kind_tag, n)] = h
    return h


_ZEROS = [b"\x00" * i for i in range(1025)]


def _zeros(n: int) -> bytes:
    return _ZEROS[n] if n < len(_ZEROS) else b"\x00" * n


def _packed_body(values: Sequence[int]) -> bytes:
    """Packed varints of ``values`` (``_packed_ints`` without padding)."""
    try:
        if len(values) > 1:
            return b"".join(itemgetter(*values)(_VARINTS))
        return _VARINTS[values[0]] if values else b""
    except KeyError:
        return b"".join([_varint(v) for v in values])


def _small_body(values: Sequence[int]) -> bytes:
    """``_small_ints`` without padding."""
    try:
        b = bytes(values)
    except ValueError:  # negative or > 255
        return _packed_body(values)
    return b if b.isascii() else _packed_body(values)


def serialize_instance(inst: Any, max_seq_length: int, max_predictions_per_seq: int,
                       token_boundary: bool = False) -> bytes:
    """``tf.train.Example`` bytes for an ``Instance`` (any object with its fields)."""
    ids = inst.input_ids
    n = len(ids)
    if n > max_seq_length:
        raise ValueError(f"instance has {n} tokens > max_seq_length {max_seq_length}")
    pos = inst.masked_lm_positions
    k = len(pos)
    if k > max_predictions_per_seq:
        raise ValueError(f"instance has {k} predictions > {max_predictions_per_seq}")
    if len(inst.segment_ids) != n or len(inst.masked_lm_ids) != k:
        raise ValueError("instance field lengths disagree")
    pad = max_seq_length - n
    ppad = max_predictions_per_seq - k
    zp = _zeros(pad)
    zpp = _zeros(ppad)
    # Values < 128 are one-byte varints, so bytes() is their packed encoding:
    # segment ids and token_boundary are 0/1, and positions are < 128 when
    # max_seq_length <= 128.
    pos_body = _small_body(pos) if max_seq_length <= 128 else _packed_body(pos)
    # Entries that depend only on lengths/labels are cached.
    mask_e = _MASK_ENTRIES.get((n, pad))
    if mask_e is None:
        mask_e = _MASK_ENTRIES[(n, pad)] = _entry(_K["input_mask"], _INT64,
                                                  b"\x01" * n + b"\x00" * pad)
    weight_e = _WEIGHT_ENTRIES.get((k, ppad))
    if weight_e is None:
        weight_e = _WEIGHT_ENTRIES[(k, ppad)] = _entry(_K["masked_lm_weights"], _FLOAT,
                                                       _ONE_F32 * k + _ZERO_F32 * ppad)
    label = int(inst.next_sentence_label)
    label_e = _LABEL_ENTRIES.get(label)
    if label_e is None:
        label_e = _LABEL_ENTRIES[label] = _entry(_K["next_sentence_labels"], _INT64, _varint(label))
    ids_body = _packed_body(ids)
    mlm_body = _packed_body(inst.masked_lm_ids)
    seg_body = _small_body(inst.segment_ids)
    # Sorted key order (what deterministic serialization emits); each
    # variable entry is its cached header, its packed values, its padding.
    parts = [
        b"",  # the Example header, filled in below
        _header(_K["input_ids"], _INT64, len(ids_body) + pad), ids_body, zp,
        mask_e,
        _header(_K["masked_lm_ids"], _INT64, len(mlm_body) + ppad), mlm_body, zpp,
        _header(_K["masked_lm_positions"], _INT64, len(pos_body) + ppad), pos_body, zpp,
        weight_e,
        label_e,
        _header(_K["segment_ids"], _INT64, len(seg_body) + pad), seg_body, zp,
    ]
    if token_boundary:
        tb = inst.token_boundary
        if len(tb) != n:
            raise ValueError("token_boundary length disagrees with input_ids")
        tb_body = _small_body(tb)
        parts += (_header(_K["token_boundary"], _INT64, len(tb_body) + pad), tb_body, zp)
    parts[0] = b"\x0a" + _varint(sum(map(len, parts)))
    return b"".join(parts)


# -- a small decoder (tests, inspection tools; no TensorFlow needed) ---------

def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = 0
    v = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, i
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field of one message."""
    out = []
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        fn, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(buf, i)
        elif wt == 2:
            ln, i = _read_varint(buf, i)
            v = buf[i:i + ln]
            i += ln
        elif wt == 5:
            v = buf[i:i + 4]
            i += 4
        elif wt == 1:
            v = buf[i:i + 8]
            i += 8
        else:
            raise ValueError(f"unsupported wire type {wt}")
        out.append((fn, wt, v))
    return out


def parse_example(data: bytes) -> dict[str, list]:
    """Decode ``tf.train.Example`` bytes into ``{name: list of values}``.

    Handles int64 and float lists, packed or not; bytes lists come back as
    lists of ``bytes``.
    """
    result: dict[str, list] = {}
    for fn, _, features in _fields(data):
        if fn != 1:
            continue
        for efn, _, entry in _fields(features):
            if efn != 1:
                continue
            name = ""
            feat = b""
            for f, _, v in _fields(entry):
                if f == 1:
                    name = v.decode()
                elif f == 2:
                    feat = v
            values: list = []
            for kind, _, lst in _fields(feat):
                for f, wt, v in _fields(lst):
                    if kind == 3:  # int64
                        if wt == 2:
                            j = 0
                            while j < len(v):
                                x, j = _read_varint(v, j)
                                values.append(x - (1 << 64) if x >= 1 << 63 else x)
                        else:
                            values.append(v - (1 << 64) if v >= 1 << 63 else v)
                    elif kind == 2:  # float
                        if wt == 2:
                            values.extend(struct.unpack(f"<{len(v) // 4}f", v))
                        else:
                            values.append(struct.unpack("<f", v)[0])
                    elif kind == 1:  # bytes
                        values.append(bytes(v))
            result[name] = values
    return result
