"""The error for a cluster that cannot serve a job: a leaf, imports nothing."""

from __future__ import annotations

__all__ = ["ClusterError", "first_line"]


class ClusterError(Exception):
    """A cluster that cannot be joined, or that cannot fit one trial; ``str(err)`` is one line.
    The caller decides what it means (``allocator`` turns it into a user error)."""


def first_line(exc: BaseException) -> str:
    """An exception's first line of text, or its type's name when it has none: what a one-line
    error message quotes of a library's error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
