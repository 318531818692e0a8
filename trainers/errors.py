"""The error the trainers raise for bad input: a leaf, imports nothing."""

from __future__ import annotations

__all__ = ["TrainerError"]


class TrainerError(Exception):
    """Bad input to a trainer (a tokenizer folder, a chat template, a recipe, weights that do
    not fit the model): ``str(err)`` is one line naming the culprit. Whoever calls the
    trainers decides what it means for them (``allocator`` turns it into its ``UserError``)."""
