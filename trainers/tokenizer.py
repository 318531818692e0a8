"""A character-level tokenizer for the built-in suite's tiny model.

Character level because the suite's answers are exact strings of letters and
digits: a BPE vocabulary splits digits irregularly, which hides arithmetic from
a tiny model (../shared/PLATFORM.md). The template, used for training and
evaluation alike, is::

    <bos> instruction "\\n" response <eos>

with the loss on ``response <eos>`` only. Conversations generalize it: ``<bos>``,
then each turn in order, a system or user turn followed by ``"\\n"``, an
assistant turn followed by ``<eos>``; the loss falls on assistant turns (and
their ``<eos>``) only.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["BOS", "EOS", "PAD", "UNK", "CharTokenizer", "truncate"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3


class _Turn(NamedTuple):
    role: str
    content: str


_SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
_CHARS = " \n" + string.ascii_lowercase + string.ascii_uppercase + string.digits + ".,:;?!'\"-+=()/*%&#@"


class CharTokenizer:
    """Fixed vocabulary: 4 special tokens, then printable characters; unknown -> <unk>."""

    def __init__(self) -> None:
        self.itos = _SPECIALS + list(_CHARS)
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(c, UNK) for c in text]

    def decode(self, ids: list[int]) -> str:
        out = []
        for i in ids:
            if i == EOS:
                break
            if i >= len(_SPECIALS):
                out.append(self.itos[i])
        return "".join(out)

    def encode_example(self, instruction: str, response: str) -> tuple[list[int], list[int]]:
        """Token ids and the loss mask (1 on response tokens and <eos>)."""
        return self.encode_turns([_Turn("user", instruction), _Turn("assistant", response)])

    def encode_turns(self, turns: Sequence[Any]) -> tuple[list[int], list[int]]:
        """Token ids and loss mask of a conversation (objects with ``role`` and ``content``)."""
        ids, mask = [BOS], [0]
        for t in turns:
            if t.role == "assistant":
                part = [*self.encode(t.content), EOS]
                ids += part
                mask += [1] * len(part)
            else:
                part = self.encode(t.content + "\n")
                ids += part
                mask += [0] * len(part)
        return ids, mask

    def encode_prompt(self, instruction: str) -> list[int]:
        return [BOS, *self.encode(instruction), *self.encode("\n")]


def truncate(ids: list[int], mask: list[int], max_length: int) -> tuple[list[int], list[int]] | None:
    """Cut to ``max_length`` tokens; ``None`` when no loss token is left (the caller drops
    and counts the example: it must never be trained on silently)."""
    ids, mask = ids[:max_length], mask[:max_length]
    return (ids, mask) if any(mask) else None
