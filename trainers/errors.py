"""The error the trainers raise for bad input: a leaf, imports nothing."""

from __future__ import annotations

__all__ = ["TrainerError", "first_line"]


class TrainerError(Exception):
    """Bad input to a trainer (a tokenizer folder, a chat template, a recipe, weights that do
    not fit the model): ``str(err)`` is one line naming the culprit. Whoever calls the
    trainers decides what it means for them (``allocator`` turns it into its ``UserError``)."""


def first_line(exc: BaseException) -> str:
    """An exception's first line of text, or its type's name when it has none: what a one-line
    error message quotes of a library's error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
