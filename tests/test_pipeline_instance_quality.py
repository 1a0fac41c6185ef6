"""Issue 15 end to end: the committed sample through pipelines.build, the
TFRecords read back (``bench/instance_quality.py``): every SOP instance is a
pair, no junk, the masking budget holds exactly, ALBERT's token_boundary; the
new counters reach the manifest and stats.json."""

from __future__ import annotations

import json
import sys

import pytest

from tests.pipeline_util import ROOT, build

sys.path.insert(0, str(ROOT / "bench"))
import instance_quality  # noqa: E402

ARGS = ("--max_seq_length", "128", "--max_predictions_per_seq", "20", "--dupe_factor", "3",
        "--num_shards", "2", "--num_doc_shards", "2", "--token_boundary")


@pytest.fixture(scope="module")
def sop(tmp_path_factory):
    out = tmp_path_factory.mktemp("q")
    return out, build(out, *ARGS)


def test_instances_read_back(sop):
    out, m = sop
    q = instance_quality.measure(str(out))
    assert q["instances"] == m["tfrecords"]["num_instances"] > 5000
    assert q["single_segment"] == 0 and q["mostly_punct"] == 0 and q["all_punct"] == 0
    assert q["no_predictions"] == 0 and q["budget_mismatch"] == 0
    assert q["token_boundary_checked"] == q["instances"] and q["token_boundary_bad"] == 0
    assert abs(q["label_1_share"] - 0.5) < 0.02      # ~7k instances: the 1% check is in tests


def test_new_counters_reach_manifest_and_stats(sop):
    out, m = sop
    c = m["counters"]
    stats = json.loads((out / "stats.json").read_text())
    inst = stats["stages"]["instances"]["edits"]
    names = [k for k in c if k.startswith(("pairs:single_", "instances:dropped:", "mask:partial"))]
    assert {"pairs:single_split_clause", "pairs:single_split_mid"} <= set(names)
    assert inst == {k: c[k] for k in names}
    assert c["pairs:sop:swapped"] + c["pairs:sop:in_order"] \
        == m["tfrecords"]["num_instances"] + c.get("instances:dropped:mostly_punct", 0)
    clean = stats["stages"]["clean"]["edits"]
    assert clean == {k: v for k, v in c.items() if k.startswith("clean:edited:")}
    assert clean["clean:edited:punct_runs"] > 0 and clean["clean:edited:junk_lines"] > 0
    # Line edits are not document outcomes: the document counts still add up.
    n = m["counts"]
    assert n["read"] == n["kept"] + n["filtered"] + n["duplicates"] + n["rejected"]
