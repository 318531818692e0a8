"""The error for a cluster that cannot serve a job: a leaf, imports nothing."""

from __future__ import annotations

__all__ = ["ClusterError"]


class ClusterError(Exception):
    """A cluster that cannot be joined, or that cannot fit one trial; ``str(err)`` is one line.
    The caller decides what it means (``allocator`` turns it into a user error)."""
