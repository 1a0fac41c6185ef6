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
from corpusflow.config import ConfigError
from pipelines.options import BuildOptions, DaskConfig, option_classes

PROG = "python -m pipelines.build"
USAGE = f"{PROG} --input 'GLOB' [--input 'GLOB' ...] --output DIR [options]"


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
    """Make every local path option (``Spec.path``) absolute in the driver, before any
    worker sees it."""
    for cls in option_classes():
        for name in cls.path_options():
            value = getattr(b, name)
            if isinstance(value, list):
                setattr(b, name, [_abs(v) for v in value])
            else:
                setattr(b, name, _abs(value))


def validate(b: BuildOptions) -> None:
    """Every option class's ranges and rules (defined with the options), before the first
    stage starts; raises ``UsageError`` naming the flag."""
    try:
        for cls in option_classes():
            cls.from_options(b).validate()
    except (ConfigError, ValueError) as e:
        raise UsageError(str(e)) from None
    _validate_dask(b)
    if b.quality_model:
        from corpusflow.quality.model import ModelError, load_model
        from pipelines.beam_io import BEAM
        try:
            load_model(b.quality_model, BEAM)  # refused here, before any stage, with one line
        except ModelError as e:
            raise UsageError(str(e)) from None


def _validate_dask(b: BuildOptions) -> None:
    """--dask_* flags only with --runner DaskRunner, whose packages and Beam must be there."""
    runner = b.view_as(po.StandardOptions).runner
    dask_flags = DaskConfig.from_options(b).flags_set()
    if dask_flags and runner != "DaskRunner":
        raise UsageError(f"--{dask_flags[0]} needs --runner DaskRunner")
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
