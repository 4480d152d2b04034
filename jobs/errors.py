"""Errors that the command line turns into exit statuses."""

from __future__ import annotations

__all__ = ["UsageError", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE"]

EXIT_OK = 0  # every input done
EXIT_SOME_FAILED = 1  # finished, but some inputs failed (see failures.parquet)
EXIT_USAGE = 2  # bad usage or configuration


class UsageError(Exception):
    """Bad usage, configuration or state: the CLI prints the message on one line and exits 2."""
