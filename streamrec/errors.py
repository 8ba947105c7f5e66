"""Errors that the CLI turns into a message and a non-zero exit code."""

from __future__ import annotations


class StreamrecError(Exception):
    """An error with a message that tells the user what to do."""

    exit_code = 1


class UsageError(StreamrecError):
    """The command line or the input asks for something that cannot be done."""

    exit_code = 2
