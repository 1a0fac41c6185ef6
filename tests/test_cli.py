"""The build's command line as a stranger meets it (issue 14, item 2): --help, unparsed
words, an unquoted glob, values out of range. Every refusal is one line and exit code 2,
before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipelines import cli
from pipelines.build import main
from tests.pipeline_util import ROOT, SAMPLE


def _run_cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.build", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_help_lists_every_corpusflow_option_grouped_with_its_default():
    proc = _run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("usage: python -m pipelines.build --input 'GLOB'")
    parser = cli.corpusflow_parser()
    options = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    assert len(options) >= 50
    missing = [o for o in options if o not in text]
    assert missing == []
    for group in ("input and output", "cleaning (stage clean)", "deduplication (stage dedup)",
                  "word segmentation (stage segment)", "pretraining instances"):
        assert f"corpusflow: {group}" in text
    flat = " ".join(text.split())
    assert "(default: 128)" in flat and "(default: 0.15)" in flat and "(default: wwm)" in flat
    assert "bert_base_chinese_vocab.txt" in flat  # the bundled vocab is the default
    # Every corpusflow option has a help line.
    assert [a.dest for a in parser._actions if not a.help] == []


def test_help_beam_lists_beams_own_options():
    proc = _run_cli("--help_beam")
    assert proc.returncode == 0
    for flag in ("--runner", "--direct_num_workers", "--temp_location", "--setup_file"):
        assert flag in proc.stdout


def test_an_unquoted_glob_is_an_error_naming_the_lost_files(tmp_path, capsys):
    # What `--input data/sample/*.jsonl` becomes after the shell expanded it.
    files = sorted(str(p) for p in SAMPLE.glob("*.jsonl"))
    assert len(files) >= 2
    rc = main(["--input", *files, "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0
    assert err.startswith("corpusflow: error: unexpected argument(s): ")
    for f in files[1:]:
        assert f in err
    assert "quote it" in err
    assert not (tmp_path / "out").exists()


def test_unknown_option_is_an_error_with_a_suggestion(tmp_path, capsys):
    rc = main(["--input", str(SAMPLE / "*.jsonl"), "--output", str(tmp_path / "o"),
               "--max_seq_lenght", "64"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown option(s): --max_seq_lenght (did you mean --max_seq_length?)" in err


def test_beam_options_are_still_accepted():
    assert cli.parse(["--input", "x", "--runner", "DirectRunner", "--direct_num_workers", "2",
                      "--direct_running_mode", "multi_processing"]) is not None


@pytest.mark.parametrize("args,message", [
    (["--masked_lm_prob", "1.5"], "--masked_lm_prob must be in (0, 1], got 1.5"),
    (["--masked_lm_prob", "0"], "--masked_lm_prob must be in (0, 1], got 0.0"),
    (["--short_seq_prob", "2"], "--short_seq_prob must be in [0, 1], got 2.0"),
    (["--max_seq_length", "100000"], "--max_seq_length 100000 is above 512"),
    (["--max_seq_length", "4"], "--max_seq_length must be >= 8, got 4"),
    (["--max_predictions_per_seq", "200", "--max_seq_length", "128"],
     "--max_predictions_per_seq must be in [1, --max_seq_length=128], got 200"),
    (["--num_shards", "0"], "--num_shards must be in [1, 100000], got 0"),
    (["--num_doc_shards", "1000000"], "--num_doc_shards must be in [1, 100000], got 1000000"),
    (["--dupe_factor", "0"], "--dupe_factor must be in [1, 1000], got 0"),
    (["--minhash_threshold", "1.2"], "--minhash_threshold must be in (0, 1], got 1.2"),
    (["--min_cjk_ratio", "-0.1"], "--min_cjk_ratio must be in [0, 1], got -0.1"),
    (["--masking", "span"], "argument --masking: invalid choice: 'span'"),
    (["--max_seq_length", "abc"], "argument --max_seq_length: invalid int value: 'abc'"),
    (["--t2s", "maybe"], "argument --t2s: expected true or false, got 'maybe'"),
    (["--vocab_file", "none", "--stop_after", "tfrecords"],
     "--stop_after tfrecords needs a --vocab_file (not 'none')"),
])
def test_bad_values_are_refused_before_any_stage(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    rc = main(["--input", str(SAMPLE / "*.jsonl"), "--output", str(out), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.count("\n") == 0
    assert message in err
    assert not out.exists()


def test_long_sequences_need_the_flag():
    from apache_beam.options.pipeline_options import PipelineOptions
    from pipelines.errors import UsageError
    from pipelines.options import BuildOptions
    argv = ["--input", "x", "--output", "y", "--max_seq_length", "1024"]
    with pytest.raises(UsageError, match="pass --allow_long_sequences"):
        cli.validate(PipelineOptions(argv).view_as(BuildOptions))
    cli.validate(PipelineOptions(argv + ["--allow_long_sequences"]).view_as(BuildOptions))


def test_relative_paths_are_made_absolute_in_the_driver(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions
    from pipelines.options import BuildOptions
    b = PipelineOptions(["--input", "in/*.jsonl", "--output", "out", "--user_dict", "d.txt",
                         "--decontaminate", "dev/*.json", "--vocab_file", "v.txt",
                         "--ltp_model", "gs://b/m"]).view_as(BuildOptions)
    cwd = os.getcwd()
    cli.absolutize(b)
    assert b.input == [os.path.join(cwd, "in/*.jsonl")]
    assert b.output == os.path.join(cwd, "out")
    assert b.user_dict == os.path.join(cwd, "d.txt")
    assert b.decontaminate == [os.path.join(cwd, "dev/*.json")]
    assert b.vocab_file == os.path.join(cwd, "v.txt")
    assert b.ltp_model == "gs://b/m"
