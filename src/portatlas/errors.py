"""Errors with a one-line message and the exit code the CLI turns them into."""

from __future__ import annotations

# Exit codes (documented in the README): 0 found/ok, 1 not found, 2 usage error,
# 3 data problem (no or bad registry), 4 network or system failure, 130 interrupted.
EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_SYSTEM = 4
EXIT_INTERRUPTED = 130


class PortatlasError(Exception):
    """Base class: str(error) is the one-line message shown to the user."""

    exit_code = EXIT_SYSTEM


class UsageError(PortatlasError, ValueError):
    """The user's input cannot be understood (bad port, transport, range, option)."""

    exit_code = EXIT_USAGE


class NotFound(PortatlasError, LookupError):
    """The query is valid but nothing matches it."""

    exit_code = EXIT_NOT_FOUND


class DataError(PortatlasError):
    """A registry source or the database is missing, unreadable or malformed."""

    exit_code = EXIT_DATA


class SystemFailure(PortatlasError):
    """The system would not do it: a file that cannot be written, a folder that cannot be made."""

    exit_code = EXIT_SYSTEM


class NetworkError(SystemFailure):
    """A network failure: a refused or failed download, an unreachable host."""
