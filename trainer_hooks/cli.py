"""Shared command-line pieces of the trainer tools (pretrain, export, convert_hf)."""

from __future__ import annotations

import argparse
import copy
import difflib
import os
import re
import sys
import tempfile
from typing import Any, NoReturn, Optional


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` names every option's default.

    argparse's ``ArgumentDefaultsHelpFormatter`` only annotates options that already have a help string and
    prints ``(default: None)`` for required ones. This one gives every optional argument a ``(default: X)``,
    unless its help text already says ``default``; required options are marked ``(required)``.
    """

    def _format_action(self, action: argparse.Action) -> str:
        # argparse never calls _get_help_string for an action without help text: format a copy that has one.
        bare = not (action.help and action.help.strip())
        if bare and action.option_strings and action.help is not argparse.SUPPRESS:
            action = copy.copy(action)
            action.help = ""
            action.help = self._get_help_string(action)
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is argparse.SUPPRESS or not action.option_strings or "-h" in action.option_strings:
            return text
        if action.required:
            return f"{text} (required)".strip()
        if "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)".strip()


class StrictParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose refusals are one line, and which names a misspelled option.

    Plain argparse prints the whole usage block (25 lines for finetune) before the error, and a misspelled required
    option (``--tsk``) is reported only as "the following arguments are required: --task", never as unknown.
    Here an unknown ``--option`` is refused first, with the closest real one, and every error is
    ``PROG: error: MESSAGE (--help lists every option)`` on one line, exit status 2.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists every option)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        words = list(sys.argv[1:] if args is None else args)
        unknown = unknown_options(self, words)
        if unknown:
            self.error("unknown option(s): " + ", ".join(unknown))
        return super().parse_known_args(words, namespace)


def unknown_options(p: argparse.ArgumentParser, words: list) -> list[str]:
    """Each ``--word`` of ``words`` that names no option of ``p`` (nor, with abbreviations on, a unique prefix of
    one), with ``(did you mean --x?)`` when one is close; words after ``--`` are values."""
    known = [s for a in p._actions for s in a.option_strings if s.startswith("--")]
    out = []
    for w in words:
        if w == "--":
            break
        if not isinstance(w, str) or not w.startswith("--"):
            continue
        name = w.split("=", 1)[0]
        if name in known or (p.allow_abbrev and len([k for k in known if k.startswith(name)]) == 1):
            continue
        close = difflib.get_close_matches(name, known, n=1)
        out.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return out


def parser(prog: str, description: str, epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` whose ``--help`` shows every default and whose refusals are one line
    (``StrictParser``)."""
    return StrictParser(prog=prog, description=description, epilog=epilog, formatter_class=DefaultsHelpFormatter)


def undocumented_defaults(p: argparse.ArgumentParser) -> list[str]:
    """Optional arguments whose line in ``p.format_help()`` names no default (for tests)."""
    formatter = p._get_formatter()
    missing = []
    for action in p._actions:
        if not action.option_strings or action.help is argparse.SUPPRESS or "-h" in action.option_strings:
            continue
        text = formatter._format_action(action)
        if "default" not in text.lower() and "(required)" not in text:
            missing.append(action.option_strings[0])
    return missing



# What TensorFlow 2.21 prints to stderr while it is imported, before absl logging is initialised: INFO lines
# (oneDNN is on, CPU features) that TF_CPP_MIN_LOG_LEVEL does not reach, however early it is set.
_IMPORT_NOISE = re.compile(r"^(I\d{4} |WARNING: All log messages before absl::InitializeLog\(\) is called"
                           r"|To enable the following instructions: )")


def import_tensorflow_quietly() -> Any:
    """``import tensorflow`` without its import-time INFO lines (once per process, so once per Horovod rank).

    File descriptor 2 is pointed at a temporary file for the duration of the import; afterwards every line that
    is not one of those INFO lines (a warning, an error, a traceback) is written to stderr as it was.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiets TF's later C++ INFO/WARNING lines
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [ln for ln in held.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not _IMPORT_NOISE.match(ln)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
    return tensorflow
