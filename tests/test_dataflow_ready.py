"""Issue 8: the Dataflow job graphs build offline, and the sdist ships every module."""

from __future__ import annotations

import subprocess
import sys
import tarfile

import pytest

from tests.pipeline_util import ROOT, SAMPLE_INPUTS, build

pytest.importorskip("apache_beam.runners.dataflow.dataflow_runner")
pytest.importorskip("google.cloud.storage", reason="needs apache-beam[gcp]")

DATAFLOW = ["--runner", "DataflowRunner", "--project", "corpusflow-test", "--region", "us-central1",
            "--temp_location", "gs://corpusflow-test/tmp", "--dry_run", "True", "--no_auth",
            "--sdk_location", "container", "--setup_file", str(ROOT / "setup.py")]


def test_dataflow_dry_run_builds_every_stage(tmp_path):
    m = build(tmp_path, *DATAFLOW, "--vocab_file", str(ROOT / "data" / "vocab" / "sample_vocab.txt"),
              "--near_dedup", "true")
    assert m["dry_run"] is True
    assert set(m["stages"]) == {"clean", "dedup", "segment", "instances", "tfrecords"}
    for stage, info in m["stages"].items():
        # Dataflow rejects job requests over 20 MB; ours are a few hundred KB at most.
        assert 0 < info["pipeline_proto_bytes"] < 2 * 2**20, stage
    # Nothing ran.
    assert not (tmp_path / "manifest.json").exists()


def test_sdist_contains_every_module(tmp_path):
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True)
    (sdist,) = tmp_path.glob("corpusflow-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for pkg in ("corpusflow", "pipelines", "vocab", "trainer_hooks"):
        for path in (ROOT / pkg).rglob("*.py"):
            assert str(path.relative_to(ROOT)) in names, path
    for cfg in (ROOT / "trainer_hooks" / "configs").glob("*.json"):
        assert str(cfg.relative_to(ROOT)) in names
    assert "setup.py" in names
