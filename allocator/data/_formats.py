"""Instruction formats -> one normalized form: a conversation of (role, content) turns.

Declared per source, with a column mapping in the manner of LLaMA-Factory's
dataset registry:

- ``alpaca``: ``instruction``, optional ``input`` (appended to the instruction
  after a blank line), ``output``, optional ``system``;
- ``sharegpt``: ``conversations: [{from, value}]`` with roles ``human``/``user``,
  ``gpt``/``assistant``, ``system`` (tags configurable);
- ``messages`` (OpenAI): ``messages: [{role, content}]``;
- ``prompt_completion``: ``prompt``, ``completion``;
- ``fields``: a free mapping, ``prompt``, ``response`` and optional ``context``
  (appended to the prompt after a blank line, like alpaca's input).

A conversation is an optional system turn, then user and assistant turns
alternating, starting with user and ending with assistant; multi-turn examples
keep their turns and the loss falls on assistant turns only. Every violation is
a ``DataError`` naming the file, the row, the field and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from allocator.errors import UserError

__all__ = ["FORMATS", "DataError", "EmptyText", "Turn", "to_turns"]

FORMATS = ("alpaca", "sharegpt", "messages", "prompt_completion", "fields")

# the columns each format reads, by their default names; a source's `columns` renames them
DEFAULT_COLUMNS: dict[str, dict[str, str]] = {
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output", "system": "system"},
    "sharegpt": {"conversations": "conversations", "system": "system"},
    "messages": {"messages": "messages"},
    "prompt_completion": {"prompt": "prompt", "completion": "completion"},
    "fields": {"prompt": "prompt", "response": "response", "context": "context"},
}
DEFAULT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tags": ("human", "user"),
    "assistant_tags": ("gpt", "assistant", "chatgpt", "bard", "model"),
    "system_tags": ("system",),
}
_MESSAGE_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}


class DataError(UserError):
    """Malformed data; the message names file, row, field and what was expected."""


class EmptyText(DataError):
    """An empty instruction, response or turn: an error, or a counted drop (``empty: drop``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Turn:
    role: str  # "system", "user" or "assistant"
    content: str


def _where(source: str, row: int, field: str) -> str:
    return f"{source}: row {row}: field '{field}'"


def _text(rec: Mapping[str, Any], col: str, source: str, row: int, *, required: bool) -> str | None:
    if col not in rec or rec[col] is None:
        if required:
            raise DataError(f"{_where(source, row, col)}: missing (expected a non-empty string)")
        return None
    value = rec[col]
    if not isinstance(value, str):
        raise DataError(f"{_where(source, row, col)}: expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise EmptyText(f"{_where(source, row, col)}: empty (expected a non-empty string)", col)
    return value


def _joined(main: str, extra: str | None) -> str:
    return f"{main}\n\n{extra}" if extra and extra.strip() else main


def _check_order(turns: list[Turn], source: str, row: int, field: str) -> list[Turn]:
    body = turns[1:] if turns and turns[0].role == "system" else turns
    for i, t in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if t.role != expected:
            idx = i + (len(turns) - len(body))
            raise DataError(
                f"{_where(source, row, f'{field}[{idx}]')}: turn out of order: expected a {expected} turn, "
                f"got {t.role} (turns alternate user/assistant after an optional system turn)"
            )
    if not body or body[-1].role != "assistant":
        raise DataError(f"{_where(source, row, field)}: no assistant turn to learn from (expected one at the end)")
    return turns


def _turn_list(
    rec: Mapping[str, Any], col: str, role_key: str, content_key: str, roles: Mapping[str, str], source: str, row: int
) -> list[Turn]:
    if col not in rec or rec[col] is None:
        raise DataError(f"{_where(source, row, col)}: missing (expected a list of turns)")
    items = rec[col]
    if not isinstance(items, list) or not items:
        got = type(items).__name__ if not isinstance(items, list) else "an empty list"
        raise DataError(f"{_where(source, row, col)}: expected a non-empty list of turns, got {got}")
    turns: list[Turn] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise DataError(f"{_where(source, row, f'{col}[{i}]')}: expected an object, got {type(item).__name__}")
        raw_role = item.get(role_key)
        if not isinstance(raw_role, str) or raw_role not in roles:
            known = ", ".join(sorted(roles))
            raise DataError(
                f"{_where(source, row, f'{col}[{i}].{role_key}')}: unknown role {raw_role!r} (expected one of {known})"
            )
        content = item.get(content_key)
        if not isinstance(content, str):
            got = "missing" if content is None else f"got {type(content).__name__}"
            raise DataError(f"{_where(source, row, f'{col}[{i}].{content_key}')}: expected a string, {got}")
        if not content.strip() and roles[raw_role] != "system":
            where = f"{col}[{i}].{content_key}"
            raise EmptyText(f"{_where(source, row, where)}: empty {roles[raw_role]} turn", f"{col}[].{content_key}")
        turns.append(Turn(roles[raw_role], content))
    if any(t.role == "system" for t in turns[1:]):
        i = next(i for i, t in enumerate(turns) if t.role == "system" and i > 0)
        raise DataError(f"{_where(source, row, f'{col}[{i}]')}: a system turn may only come first")
    return _check_order(turns, source, row, col)


def to_turns(
    rec: Mapping[str, Any],
    fmt: str,
    *,
    source: str,
    row: int,
    columns: Mapping[str, str] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> list[Turn]:
    """One raw record in format ``fmt`` -> its turns (module doc), or a ``DataError``."""
    if fmt not in FORMATS:
        raise DataError(f"{source}: unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if not isinstance(rec, Mapping):
        raise DataError(f"{source}: row {row}: expected a JSON object, got {type(rec).__name__}")
    col = {**DEFAULT_COLUMNS[fmt], **(columns or {})}
    if fmt == "alpaca":
        system = _text(rec, col["system"], source, row, required=False)
        instruction = _text(rec, col["instruction"], source, row, required=True)
        extra = _text(rec, col["input"], source, row, required=False)
        output = _text(rec, col["output"], source, row, required=True)
        assert instruction is not None and output is not None
        turns = [Turn("user", _joined(instruction, extra)), Turn("assistant", output)]
        return ([Turn("system", system)] if system and system.strip() else []) + turns
    if fmt == "prompt_completion" or fmt == "fields":
        first, second = ("prompt", "completion") if fmt == "prompt_completion" else ("prompt", "response")
        prompt = _text(rec, col[first], source, row, required=True)
        answer = _text(rec, col[second], source, row, required=True)
        assert prompt is not None and answer is not None
        extra = _text(rec, col["context"], source, row, required=False) if fmt == "fields" else None
        return [Turn("user", _joined(prompt, extra)), Turn("assistant", answer)]
    if fmt == "messages":
        return _turn_list(rec, col["messages"], "role", "content", _MESSAGE_ROLES, source, row)
    # sharegpt
    t = {**DEFAULT_TAGS, **(tags or {})}
    roles = {r: "user" for r in t["user_tags"]}
    roles.update({r: "assistant" for r in t["assistant_tags"]})
    roles.update({r: "system" for r in t["system_tags"]})
    turns = _turn_list(rec, col["conversations"], t["role_tag"], t["content_tag"], roles, source, row)
    system = _text(rec, col["system"], source, row, required=False)
    if system and system.strip() and turns[0].role != "system":
        turns = [Turn("system", system), *turns]
    return turns
