"""Errors that the CLI turns into exit codes.

A ``UserError`` is bad input (a config, a flag, a data file): the CLI prints its
one-line message and exits 2, with no traceback. Anything else is our fault and
exits 1 with a traceback.
"""

from __future__ import annotations

__all__ = ["UserError", "first_line"]


class UserError(Exception):
    """Bad input from the user; ``str(err)`` is a one-line message naming the culprit."""


def first_line(exc: BaseException) -> str:
    """An exception's first message line (its type name when it has no message), for
    wrapping a library's error into a one-line ``UserError``."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
