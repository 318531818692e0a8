"""Ability pools: a held-out split per ability and nested, reproducible sampling.

Pure functions over ``Record`` lists, no I/O.

- **Split.** Each ability's records get one fixed permutation, seeded by the
  pool seed and the ability's name (stable across runs and Python versions).
  The held-out set is its first ``k`` records (a fixed size, or a fraction,
  rounded, at least 1); the rest is the training order. Any training record
  equal to a held-out one, exactly or after normalization (case folded,
  whitespace collapsed), is removed and counted, so the held-out score never
  measures memorisation.
- **Nested sampling.** Taking ``n`` examples of an ability takes the first ``n``
  of its training order, so a larger allocation always contains a smaller one
  and two trials with the same count see the same data. A count above the pool
  size cycles through the order again, up to ``max_repeats`` passes.
- **Hash.** ``content_hash`` identifies the exact examples a trial trained on.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from allocator.data._formats import DataError

__all__ = ["AbilityPool", "content_hash", "normalize_text", "split_pools", "take"]

_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    return _SPACE.sub(" ", text.casefold()).strip()


def _key(record: object, normalized: bool) -> tuple:
    turns = record.turns  # type: ignore[attr-defined]
    if normalized:
        return tuple((t.role, normalize_text(t.content)) for t in turns)
    return tuple((t.role, t.content) for t in turns)


@dataclass(frozen=True)
class AbilityPool:
    ability: str
    train: tuple  # records in their fixed order
    heldout: tuple
    duplicates_removed: int


def split_pools(
    by_ability: Mapping[str, Sequence[object]],
    *,
    seed: int,
    heldout_size: int | None = None,
    heldout_fraction: float | None = None,
    given_heldout: Mapping[str, Sequence[object]] | None = None,
    problems: dict[str, str] | None = None,
) -> dict[str, AbilityPool]:
    """Split every ability into a held-out set and a training order (module doc).

    An ability in ``given_heldout`` (a separate evaluation file) keeps those
    records as its held-out set; all of its own records are training records,
    duplicates of the given held-out ones removed the same way."""
    if (heldout_size is None) == (heldout_fraction is None):
        raise ValueError("give exactly one of heldout_size and heldout_fraction")
    given = given_heldout or {}
    pools: dict[str, AbilityPool] = {}
    for ability, records in by_ability.items():
        order = list(records)
        random.Random(zlib.crc32(f"{seed}:{ability}".encode())).shuffle(order)
        if ability in given:
            heldout, rest = list(given[ability]), order
        else:
            k = heldout_size if heldout_size is not None else max(1, round(len(order) * (heldout_fraction or 0.0)))
            if len(order) <= k:
                problem = (
                    f"ability '{ability}': {len(order)} examples, not more than its held-out size {k} "
                    f"(lower heldout, or give the ability more data)"
                )
                if problems is None:
                    raise DataError(problem)
                problems[ability] = problem
                continue
            heldout, rest = order[:k], order[k:]
        exact = {_key(r, False) for r in heldout}
        norm = {_key(r, True) for r in heldout}
        train = [r for r in rest if _key(r, False) not in exact and _key(r, True) not in norm]
        if not train:
            problem = f"ability '{ability}': every training example duplicates a held-out one"
            if problems is None:
                raise DataError(problem)
            problems[ability] = problem
            continue
        pools[ability] = AbilityPool(ability, tuple(train), tuple(heldout), len(rest) - len(train))
    return pools


def take(pool: AbilityPool, n: int, *, max_repeats: int = 1) -> list:
    """The first ``n`` examples of the training order, cycling up to ``max_repeats`` passes."""
    size = len(pool.train)
    if n < 0:
        raise ValueError(f"count must be >= 0, got {n}")
    if n > size * max_repeats:
        raise DataError(
            f"ability '{pool.ability}': {n} examples asked for, the pool has {size} "
            f"and max_repeats {max_repeats} allows {size * max_repeats}"
        )
    full, part = divmod(n, size)
    return list(pool.train) * full + list(pool.train[:part])


def content_hash(records: Sequence[object]) -> str:
    """SHA-256 of the examples' turns in order: equal data, equal hash."""
    h = hashlib.sha256()
    for r in records:
        turns = [[t.role, t.content] for t in r.turns]  # type: ignore[attr-defined]
        h.update(json.dumps([r.ability, turns], ensure_ascii=False).encode())  # type: ignore[attr-defined]
        h.update(b"\n")
    return h.hexdigest()
