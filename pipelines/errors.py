"""Errors the build reports as one line (``corpusflow: error: ...``) instead of a traceback."""


class BuildError(ValueError):
    """A problem with the inputs or options, reported before any work starts (exit 2)."""


class UsageError(BuildError):
    """A command-line problem: an unknown word, a value out of range (exit 2)."""


class EnvironmentFault(RuntimeError):
    """The machine said no while the build ran: disk full, read-only or unwritable output,
    a missing bucket (exit 1; the run can be resumed once the cause is fixed)."""
