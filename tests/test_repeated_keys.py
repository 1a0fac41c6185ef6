"""RepeatedKeys: the file-grouped local form equals the CombinePerKey form."""

from __future__ import annotations

import ast
import random

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.beam_util import make_runner
from pipelines.repeated_keys import RepeatedKeys


def _pairs(n: int, seed: int) -> list:
    rng = random.Random(seed)
    keys = [rng.getrandbits(64) for _ in range(n // 3)] + [0, 2**64 - 1]
    out = []
    for i in range(n):
        k = keys[int(rng.random() * len(keys))]
        out.append((k, (f"doc{int(rng.random() * 50)}", f"f{i % 3}.jsonl", int(rng.random() * 9))))
    return out + [(0, ("a", "", 0)), (0, ("a", "", 0)), (2**64 - 1, ("z", "x", 1))]


def _expected(pairs: list) -> list:
    groups: dict = {}
    for k, rec in pairs:
        groups.setdefault(k, []).append(rec)
    return [(k, (len(v), min(v))) for k, v in groups.items() if len(v) >= 2]


def test_local_and_combine_forms_agree(tmp_path):
    pairs = _pairs(3000, seed=1)
    want = _expected(pairs)
    assert len(want) > 100 and any(n >= 3 for _, (n, _) in want)
    for local in (True, False):
        # spill_bytes=9000: ~90 pairs a spill, so the merge sees many runs per bucket.
        with BeamTestPipeline(runner=make_runner(PipelineOptions())) as p:
            # Created as text: Create would encode keys above 2**63 with an
            # inferred VarIntCoder, which cannot hold them (the pipeline's own
            # keys come untyped from a Map, as here).
            got = (p | beam.Create([repr(x) for x in pairs], reshuffle=False)
                   | beam.Map(ast.literal_eval)
                   | RepeatedKeys(str(tmp_path / f"tmp{local}"), local, num_buckets=4,
                                  spill_bytes=9000))
            assert_that(got, equal_to(want))


def test_no_repeats_and_empty(tmp_path):
    with BeamTestPipeline(runner=make_runner(PipelineOptions())) as p:
        once = p | "Once" >> beam.Create([(i, (str(i), "", 0)) for i in range(50)])
        assert_that(once | "R1" >> RepeatedKeys(str(tmp_path / "a"), True), equal_to([]),
                    label="none")
        empty = p | "Empty" >> beam.Create([])
        assert_that(empty | "R2" >> RepeatedKeys(str(tmp_path / "b"), True), equal_to([]),
                    label="empty")
