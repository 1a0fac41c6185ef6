"""The command line of ``python -m pipelines.build``: help, strict parsing, validation.

Beam's ``PipelineOptions`` parses leniently: it prints ``usage: build.py [-h]``
for ``--help`` and discards words it cannot parse with a log warning, so an
unquoted glob (``--input dir/*`` expanded by the shell) silently lost every
file but the first. Here every word must be claimed by a corpusflow or a Beam
option, and every value is range-checked before the first stage starts.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from typing import Iterable, NoReturn, Optional

from apache_beam.options import pipeline_options as po

from pipelines.errors import UsageError
from pipelines.options import BuildOptions

PROG = "python -m pipelines.build"
USAGE = f"{PROG} --input 'GLOB' [--input 'GLOB' ...] --output DIR [options]"
MAX_SHARDS = 100_000
MAX_SEQ_LENGTH = 512


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one (not for required or help options)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=110)

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, argparse.SUPPRESS) or action.dest in ("help", "help_beam"):
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Raises ``UsageError`` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _beam_classes() -> list[type]:
    """Every ``PipelineOptions`` subclass Beam knows (as its own ``get_all_options``)."""
    seen: dict[str, type] = {}
    for cls in po.PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    return [c for c in seen.values() if c is not BuildOptions]


def corpusflow_parser() -> argparse.ArgumentParser:
    """Only corpusflow's options, grouped by stage, defaults shown: what ``--help`` prints."""
    p = _Parser(prog=PROG, usage=USAGE, add_help=False, allow_abbrev=False,
                formatter_class=_HelpFormatter,
                description="Raw Chinese text -> cleaned, deduplicated documents -> "
                            "ALBERT/NEZHA/BERT pretraining TFRecords, in five resumable stages "
                            "(clean, dedup, segment, instances, tfrecords).",
                epilog="Beam's own options (--runner DirectRunner|DataflowRunner, "
                       "--direct_num_workers N, --direct_running_mode multi_processing, --project, "
                       "--region, --temp_location, --setup_file, ...) are accepted too; "
                       "--help_beam lists them all.")
    h = p.add_argument_group("help")
    h.add_argument("-h", "--help", action="store_true", help="Show this help and exit.")
    h.add_argument("--help_beam", action="store_true", help="List Beam's own options and exit.")
    BuildOptions._add_argparse_args(p)
    return p


def full_parser() -> argparse.ArgumentParser:
    """corpusflow's and every Beam option: anything it leaves unparsed is an error."""
    p = corpusflow_parser()
    beam = po._BeamArgumentParser(add_help=False, allow_abbrev=False)
    for cls in _beam_classes():
        cls._add_argparse_args(beam)
    known = {s for a in p._actions for s in a.option_strings}
    for action in beam._actions:
        if not set(action.option_strings) & known:
            p._add_action(action)
    return p


def beam_help() -> str:
    beam = po._BeamArgumentParser(prog=PROG, usage=USAGE, add_help=False, allow_abbrev=False)
    for cls in _beam_classes():
        cls._add_argparse_args(beam)
    return beam.format_help()


def _unknown_message(unknown: list[str], parser: argparse.ArgumentParser) -> str:
    flags = [w for w in unknown if w.startswith("-")]
    words = [w for w in unknown if not w.startswith("-")]
    parts = []
    if flags:
        known = [s for a in parser._actions for s in a.option_strings]
        hints = []
        for f in flags:
            close = difflib.get_close_matches(f.split("=", 1)[0], known, n=1)
            hints.append(f"{f} (did you mean {close[0]}?)" if close else f)
        parts.append("unknown option(s): " + ", ".join(hints))
    if words:
        shown = " ".join(words[:5]) + (f" ... ({len(words)} words)" if len(words) > 5 else "")
        msg = f"unexpected argument(s): {shown}"
        if any(os.path.exists(w) or "/" in w or "." in w for w in words):
            msg += ("; these look like files of a glob the shell expanded: quote it, e.g. "
                    "--input 'dir/*.jsonl' (each --input takes one glob)")
        parts.append(msg)
    return "; ".join(parts)


def parse(argv: Optional[Iterable[str]]) -> list[str]:
    """Check that every word of ``argv`` belongs to an option; handle ``--help``.

    Returns ``argv`` as a list (Beam's ``PipelineOptions`` then parses it).
    Raises ``UsageError`` for anything unparsed or malformed; prints help and
    raises ``SystemExit(0)`` for ``--help`` / ``--help_beam``.
    """
    argv = list(argv or [])
    if "-h" in argv or "--help" in argv:
        print(corpusflow_parser().format_help())
        raise SystemExit(0)
    if "--help_beam" in argv:
        print(beam_help())
        raise SystemExit(0)
    parser = full_parser()
    _, unknown = parser.parse_known_args(argv)
    if unknown:
        raise UsageError(_unknown_message(unknown, parser))
    return argv


def _abs(path: Optional[str]) -> Optional[str]:
    """A local path made absolute (workers may run in another directory); URLs unchanged."""
    if not path or "://" in path or path.lower() == "none":
        return path
    return os.path.abspath(os.path.expanduser(path))


def absolutize(b: BuildOptions) -> None:
    """Make every local path absolute in the driver, before any worker sees it."""
    b.input = [_abs(g) for g in b.input or []]
    b.output = _abs(b.output)
    b.decontaminate = [_abs(g) for g in b.decontaminate] if b.decontaminate else b.decontaminate
    for name in ("vocab_file", "ltp_model", "user_dict", "quality_model"):
        setattr(b, name, _abs(getattr(b, name)))


def validate(b: BuildOptions) -> None:
    """Every range check, before the first stage starts; raises ``UsageError``."""
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise UsageError(msg)

    need(bool(b.input), "--input GLOB is required")
    need(bool(b.output), "--output DIR is required")
    for name in ("masked_lm_prob",):
        v = getattr(b, name)
        need(0.0 < v <= 1.0, f"--{name} must be in (0, 1], got {v}")
    for name in ("short_seq_prob", "min_cjk_ratio", "max_repeated_line_ratio"):
        v = getattr(b, name)
        need(0.0 <= v <= 1.0, f"--{name} must be in [0, 1], got {v}")
    if b.minhash_threshold is not None:
        need(0.0 < b.minhash_threshold <= 1.0,
             f"--minhash_threshold must be in (0, 1], got {b.minhash_threshold}")
    need(b.max_seq_length >= 8, f"--max_seq_length must be >= 8, got {b.max_seq_length}")
    need(b.max_seq_length <= MAX_SEQ_LENGTH or b.allow_long_sequences,
         f"--max_seq_length {b.max_seq_length} is above {MAX_SEQ_LENGTH} (BERT's position "
         f"embeddings); pass --allow_long_sequences if you mean it")
    need(1 <= b.max_predictions_per_seq <= b.max_seq_length,
         f"--max_predictions_per_seq must be in [1, --max_seq_length={b.max_seq_length}], "
         f"got {b.max_predictions_per_seq}")
    for name in ("num_shards", "num_doc_shards"):
        v = getattr(b, name)
        need(1 <= v <= MAX_SHARDS, f"--{name} must be in [1, {MAX_SHARDS}], got {v}")
    need(1 <= b.dupe_factor <= 1000, f"--dupe_factor must be in [1, 1000], got {b.dupe_factor}")
    need(1 <= b.ngram <= 10, f"--ngram must be in [1, 10], got {b.ngram}")
    need(b.nsp_window >= 1, f"--nsp_window must be >= 1, got {b.nsp_window}")
    need(b.min_chars >= 0, f"--min_chars must be >= 0, got {b.min_chars}")
    need(b.max_chars >= max(1, b.min_chars),
         f"--max_chars must be >= --min_chars ({b.min_chars}) and >= 1, got {b.max_chars}")
    need(b.line_dedup_min_chars >= 1,
         f"--line_dedup_min_chars must be >= 1, got {b.line_dedup_min_chars}")
    need(b.max_record_mb > 0, f"--max_record_mb must be > 0, got {b.max_record_mb}")
    need(b.segment_batch_size >= 1 and b.segment_block_sentences >= 1,
         "--segment_batch_size and --segment_block_sentences must be >= 1")
    import re
    need(bool(re.fullmatch(r"cpu|auto|cuda(:\d+)?", b.ltp_device or "")),
         f"--ltp_device must be cpu, cuda, cuda:N or auto, got {b.ltp_device!r}")
    need(b.random_seed >= 0, f"--random_seed must be >= 0, got {b.random_seed}")
    _validate_dask(b, need)
    if b.min_quality is not None:
        need(0.0 <= b.min_quality <= 1.0, f"--min_quality must be in [0, 1], got {b.min_quality}")
        need(bool(b.quality_model), "--min_quality needs --quality_model DIR")
    if b.quality_model:
        from corpusflow.quality.model import ModelError, load_model
        from pipelines.beam_io import BEAM
        try:
            load_model(b.quality_model, BEAM)  # refused here, before any stage, with one line
        except ModelError as e:
            raise UsageError(str(e)) from None


def _validate_dask(b: BuildOptions, need) -> None:
    """--dask_* flags: ranges, one way to find the cluster, only with --runner DaskRunner."""
    runner = b.view_as(po.StandardOptions).runner
    dask_flags = [f for f in ("dask_address", "dask_local_workers", "dask_partitions")
                  if getattr(b, f)]
    need(runner == "DaskRunner" or not dask_flags,
         f"--{dask_flags[0] if dask_flags else ''} needs --runner DaskRunner")
    need(0 <= b.dask_local_workers <= 1024,
         f"--dask_local_workers must be in [0, 1024], got {b.dask_local_workers}")
    need(0 <= b.dask_partitions <= MAX_SHARDS,
         f"--dask_partitions must be in [0, {MAX_SHARDS}], got {b.dask_partitions}")
    need(not (b.dask_address and b.dask_local_workers),
         "--dask_address and --dask_local_workers exclude each other")
    if b.dask_address:
        import re
        need(bool(re.fullmatch(r"(tcp|tls)://[^\s:/]+:\d{1,5}", b.dask_address)),
             f"--dask_address must look like tcp://HOST:PORT, got {b.dask_address!r}")
    if runner == "DaskRunner":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UsageError("--runner DaskRunner needs dask and distributed: "
                             "pip install -e '.[dask]'") from None
        from pipelines.runners.dask_runner import check_beam_version
        check_beam_version()


def main_help_text() -> str:
    """What ``--help`` prints (used by tests and the README)."""
    return corpusflow_parser().format_help()


if __name__ == "__main__":  # pragma: no cover - convenience
    sys.stdout.write(main_help_text())
