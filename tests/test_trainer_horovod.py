"""2-process Horovod (Gloo, CPU) run of the trainer; skipped when horovod is not installed.

CI installs horovod with scripts/build_horovod.sh, so there this test runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow", reason="horovod not installed (scripts/build_horovod.sh)",
                    exc_type=ImportError)

from tests.test_trainer import REPO, cli_args, make_run_dir, read_log, subprocess_env  # noqa: E402


def horovodrun() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "horovodrun")
    found = here if os.path.exists(here) else shutil.which("horovodrun")
    if not found:
        pytest.skip("horovod is importable but horovodrun is not on PATH")
    return found


def test_two_ranks_train_with_identical_weights(tmp_path):
    run = make_run_dir(tmp_path, "albert", num_shards=2, per_shard=8)
    model_dir, dump = str(tmp_path / "out"), str(tmp_path / "weights")
    # Ranks start from different weights (test hook) and read different shards: identical weights at the end
    # prove both the post-step-1 broadcast and the gradient all-reduce of the later steps.
    cmd = [horovodrun(), "-np", "2", "-H", "localhost:2", sys.executable, "-m", "trainer_hooks.pretrain",
           *cli_args(run, model_dir, 3, "--horovod", "--precision", "bf16", "--optimizer", "lamb", "--deterministic",
                     "--progress_every", "2", "--debug_seed_per_rank", "--debug_dump_weights", dump)]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The ranks say only what the trainer says, once (rank 0): no TensorFlow import-time INFO lines and no
    # "E0000 ... use_unbounded_threadpool" error (TF's determinism rewrite of a parallel map, now avoided).
    rank_lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith(("[0]<", "[1]<"))]
    said = [ln.split(">:", 1)[1] for ln in rank_lines]
    assert all(ln.startswith("[0]<") for ln in rank_lines), rank_lines
    assert all(s.startswith("[trainer] ") for s in said), said
    assert [s.split(" |")[0] for s in said if s.startswith("[trainer] step ")] == ["[trainer] step 2/3",
                                                                                 "[trainer] step 3/3"]
    assert len([s for s in said if "--precision bf16" in s]) == (0 if tf.config.list_physical_devices("GPU") else 1)
    w0, w1 = (np.load(os.path.join(dump, f"weights_rank{r}.npz")) for r in (0, 1))
    assert w0.files == w1.files and len(w0.files) > 10
    for name in w0.files:
        np.testing.assert_array_equal(w0[name], w1[name], err_msg=name)
    log = read_log(model_dir)  # rank 0 only writes it
    assert [r["step"] for r in log] == [1, 2, 3] and not any(r["skipped"] for r in log)
    assert log[0]["learning_rate"] == pytest.approx(2e-3)  # 1e-3 scaled by 2 processes

