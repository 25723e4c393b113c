"""Errors the CLI reports as one clear line (no stack trace)."""


class BenchError(Exception):
    """A user-facing error: the message names the problem and the fix. ``exit_code`` is the CLI's exit status."""

    exit_code = 1


class NonFiniteLossError(BenchError):
    """Training produced a NaN or infinite loss."""


class RunInterrupted(BenchError):
    """The run was interrupted before it finished; no record was written (exit status 130 for Ctrl+C, 143 for
    SIGTERM, as a shell reports a process ended by that signal)."""

    exit_code = 130
