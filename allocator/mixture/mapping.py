"""The mixture space: from a point of the search space to example counts, and back.

Pure functions, no I/O. The search space has one coordinate ``u_a`` in [0, 1]
per ability ``a``. A point maps to counts in three steps:

1. weights ``w_a = -ln(1 - u_a)``. If the ``u_a`` are independent uniforms,
   the ``w_a`` are independent Exp(1) and ``w / sum(w)`` is uniform on the
   probability simplex (a flat Dirichlet): a random search explores every
   mixture, skewed ones included, with equal density. All ``u_a`` equal gives
   the uniform mixture; all zero is read as uniform too.
2. proportions ``p = w / sum(w)``, turned into counts of the total ``budget``
   by water-filling: an ability whose share exceeds its cap (its pool size, or
   a configured maximum) gets the cap, the excess is shared among the others in
   proportion to their weights, repeatedly.
3. integer counts by largest remainder, so they sum to the budget exactly.

Counts are never negative, never above a cap, and sum to ``budget``.

A budget in **tokens** (``budget_unit: tokens``) runs the same mapping over
token caps, then converts each ability's token share to examples: the longest
prefix of its fixed order (cycled up to ``max_repeats`` passes) whose tokens
fit the share (``examples_within``). Nested sampling is kept, and the total
never exceeds the budget; each ability may leave less than one example's
tokens unspent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = [
    "counts_from_point",
    "counts_from_weights",
    "examples_within",
    "point_from_counts",
    "uniform_counts",
    "uniform_point",
]

_U_MAX = 1.0 - 1e-12  # keeps -ln(1-u) finite at the closed end of Optuna's range


def _largest_remainder(real: dict[str, float], caps: dict[str, int], total: int) -> dict[str, int]:
    counts = {a: min(math.floor(x + 1e-9), caps[a]) for a, x in real.items()}
    short = total - sum(counts.values())
    # hand out the missing units by descending fractional part, ties by name
    order = sorted(real, key=lambda a: (-(real[a] - counts[a]), a))
    while short > 0:
        progressed = False
        for a in order:
            if short == 0:
                break
            if counts[a] < caps[a]:
                counts[a] += 1
                short -= 1
                progressed = True
        if not progressed:  # pragma: no cover - excluded by the capacity check
            raise AssertionError("no capacity left")
    return counts


def counts_from_weights(
    weights: Mapping[str, float], budget: int, caps: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Split ``budget`` examples in proportion to ``weights`` under per-ability caps."""
    names = list(weights)
    if not names:
        raise ValueError("no abilities")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if any(w < 0 or math.isnan(w) for w in weights.values()):
        raise ValueError(f"weights must be >= 0, got {dict(weights)}")
    capmap = {a: (caps[a] if caps is not None and a in caps else budget) for a in names}
    if sum(capmap.values()) < budget:
        raise ValueError(f"budget {budget} exceeds the total capacity {sum(capmap.values())}")
    w = dict(weights)
    if sum(w.values()) <= 0:
        w = {a: 1.0 for a in names}
    real: dict[str, float] = {}
    free = [a for a in names]
    remaining = float(budget)
    while free:
        wsum = sum(w[a] for a in free)
        if wsum <= 0:  # only zero-weight abilities left: they share what remains equally
            share = {a: remaining / len(free) for a in free}
        else:
            share = {a: remaining * w[a] / wsum for a in free}
        over = [a for a in free if share[a] > capmap[a]]
        if not over:
            real.update(share)
            break
        for a in over:
            real[a] = float(capmap[a])
            remaining -= capmap[a]
            free.remove(a)
    return _largest_remainder(real, capmap, budget)


def counts_from_point(
    point: Mapping[str, float],
    budget: int,
    caps: Mapping[str, int] | None = None,
    minimum: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Map a point ``{ability: u in [0, 1]}`` of the search space to counts (module doc).
    With ``minimum``, each ability first gets its minimum and the point splits the rest
    (under the caps less the minimum)."""
    weights = {}
    for a, u in point.items():
        if not 0.0 <= u <= 1.0:
            raise ValueError(f"coordinate of {a!r} must lie in [0, 1], got {u}")
        weights[a] = -math.log1p(-min(u, _U_MAX))
    if not minimum:
        return counts_from_weights(weights, budget, caps)
    lo = {a: int(minimum.get(a, 0)) for a in weights}
    cap = {a: (caps[a] if caps is not None and a in caps else budget) for a in weights}
    if sum(lo.values()) > budget or any(lo[a] > cap[a] for a in weights):
        raise ValueError(f"the minimum counts {lo} do not fit the budget {budget} and caps {cap}")
    rest = counts_from_weights(weights, budget - sum(lo.values()), {a: cap[a] - lo[a] for a in weights})
    return {a: lo[a] + rest[a] for a in weights}


def uniform_point(abilities: list[str]) -> dict[str, float]:
    """The point whose mixture is uniform (equal weights)."""
    return {a: 0.5 for a in abilities}


def uniform_counts(abilities: list[str], budget: int, caps: Mapping[str, int] | None = None) -> dict[str, int]:
    return counts_from_weights({a: 1.0 for a in abilities}, budget, caps)


def proportional_counts(sizes: Mapping[str, int], budget: int, caps: Mapping[str, int] | None = None) -> dict[str, int]:
    """The budget split in proportion to each ability's pool size (the "natural" mixture of the
    data as it comes), under the caps. Where every pool has the same size it is the uniform
    mixture: a confirmation then trains it once, not twice."""
    return counts_from_weights({a: float(n) for a, n in sizes.items()}, budget, caps)


def examples_within(lengths: Sequence[int], tokens: int, max_repeats: int = 1) -> int:
    """The most examples, taken in order and cycled up to ``max_repeats`` passes, whose
    token lengths sum to at most ``tokens``."""
    if not lengths or tokens <= 0:
        return 0
    per_pass = sum(lengths)
    full = min(max_repeats, tokens // per_pass) if per_pass > 0 else max_repeats
    n, left = full * len(lengths), tokens - full * per_pass
    if full < max_repeats:
        for length in lengths:
            if length > left:
                break
            n, left = n + 1, left - length
    return n


def point_from_counts(counts: Mapping[str, float], minimum: Mapping[str, int] | None = None) -> dict[str, float]:
    """A point ``{ability: u}`` that ``counts_from_point`` (with the same ``minimum``) maps
    back to ``counts`` when they respect the caps: weights proportional to the counts
    above the minimum, scaled so that equal ones give the uniform point 0.5."""
    above = {a: float(n) - float((minimum or {}).get(a, 0)) for a, n in counts.items()}
    total = sum(above.values())
    if total <= 0:
        return {a: 0.5 for a in counts}
    scale = len(counts) * math.log(2.0) / total
    return {a: float(-math.expm1(-scale * max(n, 0.0))) for a, n in above.items()}
