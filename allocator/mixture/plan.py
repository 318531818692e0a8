"""The budget plan: what a search allocates, in which unit, under which bounds (pure).

One definition, built once by the pool (``allocator.data.pools.Pools.plan``), narrowed by
the search's bounds (``bounded``), shipped to every trial inside its ``TrialSetup``, and read
by the samplers: a point of the mixture space becomes counts with ``allocate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from allocator.errors import UserError
from allocator.mixture.mapping import counts_from_point, examples_within

__all__ = ["BudgetPlan"]


@dataclass(frozen=True)
class BudgetPlan:
    """``budget`` in ``unit`` (examples, or training tokens) across abilities, each at most its
    ``caps`` (in the unit: its pool, times ``max_repeats`` passes, or lowered by a maximum) and at
    least its ``minimum`` (examples). For tokens, ``lengths`` holds each ability's token lengths
    in its fixed order."""

    unit: Literal["examples", "tokens"]
    budget: int
    caps: dict[str, int]
    max_repeats: int = 1
    minimum: dict[str, int] = field(default_factory=dict)
    lengths: dict[str, list[int]] | None = None

    @property
    def abilities(self) -> list[str]:
        return list(self.caps)

    def allocate(self, point: Mapping[str, float]) -> dict[str, int]:
        """The example counts a point stands for (allocator.mixture.mapping): the point splits
        the budget above the minimums under the caps; for tokens each ability's token share
        becomes the longest prefix of its order that fits."""
        counts = counts_from_point(point, self.budget, self.caps, self.minimum or None)
        if self.unit == "examples":
            return counts
        assert self.lengths is not None, "a token plan holds the token lengths"
        return {a: examples_within(self.lengths[a], t, self.max_repeats) for a, t in counts.items()}

    def with_budget(self, budget: int) -> BudgetPlan:
        """The same plan for another budget (a multi-objective search's smaller mixtures)."""
        return replace(self, budget=budget)

    def bounded(self, minimum: Mapping[str, int] | None, maximum: Mapping[str, int] | None) -> BudgetPlan:
        """The plan with ``search.minimum`` (kept by every mixture) and ``search.maximum``
        (lowering the caps); a bound naming an unknown ability or one the budget cannot meet
        is a ``UserError``."""
        if not minimum and not maximum:
            return self
        caps = dict(self.caps)
        for name, d in (("minimum", minimum or {}), ("maximum", maximum or {})):
            unknown = [a for a in d if a not in caps]
            if unknown:
                raise UserError(f"search.{name}: {unknown[0]!r} is not an ability of the pool ({', '.join(caps)})")
        for a, hi in (maximum or {}).items():
            caps[a] = min(caps[a], hi)
        lo = {a: int(n) for a, n in (minimum or {}).items()}
        over = [a for a, n in lo.items() if n > caps[a]]
        if over:
            a = over[0]
            raise UserError(f"search.minimum: {a}={lo[a]} exceeds what {a} can give ({caps[a]}: its pool or maximum)")
        if sum(lo.values()) > self.budget:
            raise UserError(
                f"search.minimum: the minimums add up to {sum(lo.values()):,}, over the budget {self.budget:,}"
            )
        if sum(caps.values()) < self.budget:
            room = sum(caps.values())
            raise UserError(f"search.maximum: the maximums leave room for {room:,}, under the budget {self.budget:,}")
        return replace(self, caps=caps, minimum=lo)
