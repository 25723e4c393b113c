"""Errors the CLI reports as one clear line (no stack trace)."""


class BenchError(Exception):
    """A user-facing error: the message names the problem and the fix."""


class NonFiniteLossError(BenchError):
    """Training produced a NaN or infinite loss."""


class RunInterrupted(BenchError):
    """The run was interrupted before it finished; no record was written."""
