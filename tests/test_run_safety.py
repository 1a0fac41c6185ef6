"""Issue 14, items 3-6: an output directory is owned by one run, --resume checks content,
inputs that are not regular files, empty runs, and environment faults (disk full,
read-only output) that read like messages."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import outdir
from pipelines.build import main, run
from pipelines.errors import BuildError
from tests.pipeline_util import ROOT, SAMPLE, digest_tree

VOCAB = str(ROOT / "data" / "vocab" / "sample_vocab.txt")
WIKI = str(SAMPLE / "zhwiki_sample.jsonl")
# Small and quick: one real input file, the sample vocab, few shards.
FAST = ["--vocab_file", VOCAB, "--num_doc_shards", "2", "--num_shards", "2", "--dupe_factor", "1",
        "--max_seq_length", "64", "--max_predictions_per_seq", "8", "--progress", "false"]


def _build(out: Path, *args: str, inp: str = WIKI) -> dict:
    return run(["--input", inp, "--output", str(out), *FAST, *args])


def _main(out: Path, *args: str, inp: str = WIKI) -> int:
    return main(["--input", inp, "--output", str(out), *FAST, *args])


def _tree(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- ownership
def test_output_inside_an_input_glob_is_refused(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jsonl").write_text(Path(WIKI).read_text(encoding="utf-8"), encoding="utf-8")
    for glob, out in ((f"{src}/*", src), (f"{src}/**", src / "out"), (str(src), src)):
        rc = main(["--input", glob, "--output", str(out), *FAST])
        err = capsys.readouterr().err
        assert rc == 2, (glob, out, err)
        assert "--output" in err and ("inside --input" in err or "also an --input" in err)
    # A glob that cannot match anything the build writes is fine.
    outdir.check_not_input(str(src / "out"), [f"{src}/*.jsonl"])


def test_a_second_run_with_other_options_is_refused_then_overwrite_clears_it(tmp_path, capsys):
    out = tmp_path / "out"
    _build(out)
    assert list((out / "tfrecords").glob("part-*"))
    rc = _main(out, "--vocab_file", "none")
    err = capsys.readouterr().err
    assert rc == 2 and "holds the output of a different run" in err
    assert list((out / "tfrecords").glob("part-*"))  # nothing touched
    m = _build(out, "--vocab_file", "none", "--overwrite")
    assert "tfrecords" not in m
    # Nothing of the earlier run survives beside the new manifest.
    assert not (out / "tfrecords").exists() and not (out / "stages" / "tfrecords.json").exists()
    assert not list((out / "rejects").glob("pretrain-*"))
    assert not (out / "stages" / "segment").exists()


def test_the_same_run_again_rebuilds_in_place_and_resume_to_an_earlier_stage_leaves_nothing_later(
        tmp_path):
    out = tmp_path / "out"
    _build(out)
    before = digest_tree(out, ("docs", "tfrecords"))
    _build(out)  # same command: allowed, same bytes
    assert digest_tree(out, ("docs", "tfrecords")) == before
    m = _build(out, "--resume", "--stop_after", "dedup")
    assert "tfrecords" not in m
    assert not (out / "tfrecords").exists()
    assert not any(p.startswith("stages/instances") or p.startswith("stages/segment")
                   for p in _tree(out))


def test_a_directory_with_foreign_files_is_refused_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert _main(out, *extra) == 2
        assert "holds files corpusflow did not write (notes.txt)" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_a_live_lock_stops_a_second_build_and_a_dead_one_is_taken_over(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / outdir.LOCK).write_text(json.dumps({
            "pid": sleeper.pid, "host": socket.gethostname(), "started": "2026-12-04 10:00:00",
            "proc_start": outdir._proc_start(sleeper.pid)}))
        assert _main(out) == 2
        err = capsys.readouterr().err
        assert (f"is in use by another build (pid {sleeper.pid} on {socket.gethostname()}, "
                f"started 2026-12-04 10:00:00)") in err
    finally:
        sleeper.kill()
        sleeper.wait()
    # The holder is gone now: its lock is stale and taken over; released at the end.
    m = _build(out, "--progress", "true")
    assert m["counts"]["kept"] > 0
    assert "took over a stale lock of pid" in capsys.readouterr().err
    assert not (out / outdir.LOCK).exists()


def test_two_concurrent_builds_one_is_refused(tmp_path):
    out = tmp_path / "out"
    args = ["--input", WIKI, "--output", str(out), *FAST]
    first = subprocess.Popen([sys.executable, "-m", "pipelines.build", *args], cwd=ROOT,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / outdir.LOCK).exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run([sys.executable, "-m", "pipelines.build", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert first.wait(timeout=300) == 0
    assert second.returncode == 2
    assert "is in use by another build (pid" in second.stderr


# ---------------------------------------------------------------- resume checks content
def test_resume_reruns_a_stage_whose_output_was_damaged_in_place(tmp_path, capsys):
    out = tmp_path / "out"
    _build(out)
    good = digest_tree(out, ("tfrecords",))
    shard = sorted((out / "tfrecords").glob("part-*"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit flipped
    shard.write_bytes(bytes(data))
    _build(out, "--resume", "--progress", "true", "--keep_instance_runs", "false")
    err = capsys.readouterr().err
    assert f"tfrecords: tfrecords/{shard.name} is damaged (crc32c" in err
    assert digest_tree(out, ("tfrecords",)) == good


def test_resume_reruns_clean_when_an_input_was_edited_in_place(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    text = Path(WIKI).read_text(encoding="utf-8")
    src.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    _build(out, inp=str(src))
    # Same size: swap two characters of the first article.
    i = text.index("。")
    edited = text[:i - 1] + text[i] + text[i - 1] + text[i + 1:]
    assert len(edited.encode()) == len(text.encode())
    src.write_text(edited, encoding="utf-8")
    _build(out, "--resume", "--progress", "true", inp=str(src))
    err = capsys.readouterr().err
    assert f"stage clean: rerun (clean: input {src} changed since it was cleaned" in err
    assert "stage clean: up to date" not in err


def test_a_truncated_stage_manifest_is_named_and_rerun(tmp_path, capsys):
    out = tmp_path / "out"
    first = _build(out)
    m = out / "stages" / "dedup.json"
    m.write_text(m.read_text()[:40])
    again = _build(out, "--resume", "--progress", "true")
    err = capsys.readouterr().err
    assert f"stage dedup: rerun (dedup: its manifest {m} is unreadable (JSONDecodeError" in err
    assert "stage clean: up to date, skipped" in err
    assert again["counts"] == first["counts"]
    json.loads(m.read_text())  # rewritten whole


def test_stage_manifests_record_checksums_and_input_fingerprints(tmp_path):
    import google_crc32c
    out = tmp_path / "out"
    _build(out)
    for stage, folder in (("clean", "stages/clean"), ("dedup", "docs"), ("segment", "stages/segment"),
                          ("tfrecords", "tfrecords")):
        shards = json.loads((out / "stages" / f"{stage}.json").read_text())["shards"]
        assert shards
        for s in shards:
            data = (out / folder / s["file"]).read_bytes()
            assert s["crc32c"] == f"{google_crc32c.value(data):08x}", (stage, s["file"])
    fp = json.loads((out / "stages" / "clean.json").read_text())["input_fingerprints"]
    assert [f["path"] for f in fp] == [WIKI]
    assert fp[0]["size"] == os.path.getsize(WIKI) and len(fp[0]["edges_sha256"]) == 64


# ---------------------------------------------------------------- inputs
def test_a_fifo_in_the_input_glob_is_rejected_not_waited_on(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jsonl").write_text(Path(WIKI).read_text(encoding="utf-8"), encoding="utf-8")
    os.mkfifo(src / "b.jsonl")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pipelines.build", "--input", f"{src}/*.jsonl",
                           "--output", str(out), *FAST, "--stop_after", "clean"], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["counters"]["read:rejected:not_regular_file"] == 1
    assert [f.get("kind") for f in m["inputs"]] == [None, "fifo"]


def test_a_run_that_keeps_nothing_exits_non_zero_with_the_reasons(tmp_path, capsys):
    src = tmp_path / "junk.jsonl"
    src.write_text('{"id": 1, "text": "短"}\n{"oops\n', encoding="utf-8")
    out = tmp_path / "out"
    rc = _main(out, inp=str(src))
    err = capsys.readouterr().err
    assert rc == 1
    assert ("corpusflow: error: the run kept no document (read 2: "
            "clean:filtered:too_short=1, read:rejected:malformed_json=1)") in err
    assert json.loads((out / "manifest.json").read_text())["counts"]["kept"] == 0
    assert _main(tmp_path / "out2", "--allow_empty", inp=str(src)) == 0


# ---------------------------------------------------------------- environment faults
def _mount_tmpfs(path: Path, size: str, ro: bool = False) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _leftover_temps(out: Path) -> list[str]:
    return [p for p in _tree(out) if "_tmp" in p or ".tmp-" in p]


def test_disk_full_is_one_line_leaves_no_temp_files_and_resumes(tmp_path):
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "600k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = mnt / "out"
        args = ["--input", WIKI, "--output", str(out), *FAST]
        proc = subprocess.run([sys.executable, "-m", "pipelines.build", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr[-2000:]
        lines = [x for x in proc.stderr.splitlines() if x.startswith("corpusflow: error:")]
        assert len(lines) == 1 and "No space left on device (errno 28)" in lines[0], proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        assert _leftover_temps(out) == []
        assert not (out / outdir.LOCK).exists()
        # The cause fixed (more room): --resume finishes the run.
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        proc = subprocess.run([sys.executable, "-m", "pipelines.build", *args, "--resume"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads((out / "manifest.json").read_text())["tfrecords"]["num_instances"] > 0
    finally:
        _umount(mnt)


def test_a_read_only_output_is_one_line(tmp_path):
    mnt = tmp_path / "ro"
    if not _mount_tmpfs(mnt, "1m", ro=True):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        proc = subprocess.run([sys.executable, "-m", "pipelines.build", "--input", WIKI, "--output",
                               str(mnt / "out"), *FAST], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1] == (
            f"corpusflow: error: cannot write {mnt / 'out'}: Read-only file system (errno 30); "
            f"fix it and rerun with --resume")
    finally:
        _umount(mnt)


def test_file_size_limit_simulates_a_full_disk_anywhere(tmp_path):
    """Without root (no tmpfs): RLIMIT_FSIZE makes writes past 40 kB fail (EFBIG)."""
    out = tmp_path / "out"
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000)); "
            "from pipelines.build import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "--input", WIKI, "--output", str(out), *FAST],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("corpusflow: error: cannot write ")
    assert "File too large (errno 27)" in proc.stderr
    assert _leftover_temps(out) == []


def test_build_error_for_a_directory_input(tmp_path):
    with pytest.raises(BuildError, match="is a directory: pass a glob of its files"):
        _build(tmp_path / "out", inp=str(SAMPLE))
