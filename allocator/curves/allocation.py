"""The tailored allocation: per-ability counts that maximize the predicted score
under a budget (pure numpy, no I/O).

The prediction combines each ability's own growth curve ``f_a`` (allocator.curves.growth,
fitted on its isolated runs) with the transference matrix ``T``
(allocator.curves.transference), additively::

    pred_a(n) = f_a(n_a) + sum_{b != a} T[a][b] * (f_a(n_b) - f_a(0))

i.e. b's n_b examples move a as T[a][b] times what n_b of a's own would (the
definition of T, applied at every volume). The weighted objective
``sum_a w_a pred_a(n)`` is then a sum of one-variable terms,
``sum_b h_b(n_b)`` with ``h_b(n) = w_b (f_b(n) - f_b(0)) + sum_{a != b} w_a T[a][b] (f_a(n) - f_a(0))``,
so its exact maximum under ``sum n_b = budget`` and per-ability bounds is a small
dynamic program over budget units (no concavity needed: a negative transference
makes a term convex, which would break a greedy rule). Predictions beyond the
largest measured volume are extrapolations of the fitted curves, and are flagged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "doit_rule",
    "maximize_separable",
    "objective_terms",
    "pareto_front",
    "predicted_scores",
    "tailored_allocation",
    "transfer_coefficient",
]

Curve = Callable[[np.ndarray], np.ndarray]


def transfer_coefficient(transfer: Mapping[str, Mapping[str, float | None]] | None, a: str, b: str) -> float:
    """``T[a][b]``; 0 on the diagonal, where there is no matrix, and where a study could not
    measure it (``None`` in its JSON, NaN in memory: the ability's own gain was too small)."""
    if transfer is None or a == b:
        return 0.0
    x = transfer.get(a, {}).get(b, 0.0)
    return 0.0 if x is None or math.isnan(x) else float(x)


def predicted_scores(
    counts: Mapping[str, float],
    curves: Mapping[str, Curve],
    transfer: Mapping[str, Mapping[str, float]] | None,
    ceiling: float | None = None,
) -> dict[str, float]:
    """``pred_a(n)`` of the module doc for every ability in ``curves``, at most ``ceiling``
    when given (transfer from several abilities adds up past a perfect score otherwise)."""
    out = {}
    for a, f in curves.items():
        f0 = float(f(np.asarray(0.0)))
        total = float(f(np.asarray(float(counts.get(a, 0)))))
        for b in curves:
            if b != a:
                total += transfer_coefficient(transfer, a, b) * (float(f(np.asarray(float(counts.get(b, 0))))) - f0)
        out[a] = min(total, ceiling) if ceiling is not None else total
    return out


def objective_terms(
    grid: np.ndarray,
    curves: Mapping[str, Curve],
    transfer: Mapping[str, Mapping[str, float]] | None,
    weights: Mapping[str, float],
) -> dict[str, np.ndarray]:
    """``h_b`` of the module doc evaluated on ``grid`` (counts), per ability b."""
    gains = {a: np.asarray(f(grid), dtype=float) - float(f(np.asarray(0.0))) for a, f in curves.items()}
    out = {}
    for b in curves:
        t = {a: transfer_coefficient(transfer, a, b) for a in curves if a != b}
        transferred = sum(weights.get(a, 0.0) * t[a] * gains[a] for a in t)
        out[b] = weights.get(b, 0.0) * gains[b] + transferred
    return out


def maximize_separable(values: Sequence[np.ndarray], total: int, lo: Sequence[int], hi: Sequence[int]) -> list[int]:
    """Integers ``k_i`` in ``[lo_i, hi_i]`` summing to ``total`` that maximize
    ``sum_i values[i][k_i]`` (exactly, by dynamic programming; ties to the earlier
    solution in lexicographic order of the abilities). Raises ValueError when no
    choice satisfies the bounds."""
    n = len(values)
    empty = any(lo_i > min(hi_i, total) for lo_i, hi_i in zip(lo, hi, strict=True))
    if empty or sum(lo) > total or sum(min(h, total) for h in hi) < total:
        raise ValueError(f"no allocation of {total} units fits the bounds {list(zip(lo, hi, strict=True))}")
    neg = -math.inf
    best = np.full(total + 1, neg)
    best[0] = 0.0
    choice = np.zeros((n, total + 1), dtype=int)
    for i, v in enumerate(values):
        new = np.full(total + 1, neg)
        for k in range(lo[i], min(hi[i], total) + 1):
            cand = np.full(total + 1, neg)
            cand[k:] = best[: total + 1 - k] + float(v[k])
            better = cand > new
            new[better] = cand[better]
            choice[i, better] = k
        best = new
    ks = [0] * n
    rest = total
    for i in range(n - 1, -1, -1):
        ks[i] = int(choice[i, rest])
        rest -= ks[i]
    assert rest == 0
    return ks


def tailored_allocation(
    curves: Mapping[str, Curve],
    transfer: Mapping[str, Mapping[str, float]] | None,
    budget: int,
    *,
    weights: Mapping[str, float] | None = None,
    minimum: Mapping[str, int] | None = None,
    maximum: Mapping[str, int] | None = None,
    unit: int | None = None,
    ceiling: float | None = None,
) -> dict[str, int]:
    """Counts per ability summing to ``budget`` that maximize the weighted predicted
    score (module doc). Counts move in steps of ``unit`` (default: budget / 400,
    at least 1); what a whole number of units leaves over goes, one example at a
    time, where it predicts most. With a ``ceiling`` and a transference matrix the
    predicted scores are capped (no longer a sum of one-variable terms): the dynamic
    program's exact optimum of the uncapped model is then improved by moving budget
    between pairs of abilities while the capped objective rises (a local optimum)."""
    abilities = list(curves)
    w = dict(weights) if weights is not None else {a: 1.0 / len(abilities) for a in abilities}
    unit = unit or max(1, budget // 400)
    total = budget // unit
    lo_n = {a: int((minimum or {}).get(a, 0)) for a in abilities}
    hi_n = {a: int((maximum or {}).get(a, budget)) for a in abilities}
    lo = [-(-lo_n[a] // unit) for a in abilities]
    hi = [hi_n[a] // unit for a in abilities]
    grid = np.arange(total + 1, dtype=float) * unit
    terms = objective_terms(grid, curves, transfer, w)
    ks = maximize_separable([terms[a] for a in abilities], total, lo, hi)
    counts = {a: k * unit for a, k in zip(abilities, ks, strict=True)}
    for _ in range(budget - total * unit):
        room = [a for a in abilities if counts[a] < hi_n[a]]
        if not room:
            raise ValueError(f"the maximum counts leave no room for a budget of {budget}")
        step = {a: objective_terms(np.asarray([counts[a], counts[a] + 1.0]), curves, transfer, w)[a] for a in room}
        counts[max(room, key=lambda a: float(step[a][1] - step[a][0]))] += 1
    if ceiling is not None and transfer:
        counts = _refine(counts, curves, transfer, w, ceiling, lo_n, hi_n, unit)
    return counts


def _refine(
    counts: dict[str, int],
    curves: Mapping[str, Curve],
    transfer: Mapping[str, Mapping[str, float]],
    weights: Mapping[str, float],
    ceiling: float,
    lo: Mapping[str, int],
    hi: Mapping[str, int],
    unit: int,
) -> dict[str, int]:
    """Hill-climb the capped objective by moving ``step`` examples from one ability to
    another, halving the step down to ``unit`` when no move helps."""

    def value(n: Mapping[str, int]) -> float:
        pred = predicted_scores(n, curves, transfer, ceiling)
        return sum(weights.get(a, 0.0) * pred[a] for a in curves)

    best, v = dict(counts), value(counts)
    step = max(unit, sum(counts.values()) // 8)
    while step >= unit:
        moved = False
        for a in curves:
            for b in curves:
                d = min(step, best[a] - lo[a], hi[b] - best[b])
                if a == b or d <= 0:
                    continue
                cand = {**best, a: best[a] - d, b: best[b] + d}
                cv = value(cand)
                if cv > v + 1e-12:
                    best, v, moved = cand, cv, True
        if not moved:
            step //= 2
    return best


def doit_rule(
    verdicts: Mapping[str, str], saturation: Mapping[str, float], budget: int, caps: Mapping[str, int] | None = None
) -> dict[str, int]:
    """The DoIT-style rule: start from the uniform split; cut each ``saturated``
    ability to its saturation volume (when that is smaller); give what is freed to
    the ``growing`` abilities in equal shares (to every non-saturated ability when
    none is growing); ``resistant`` ones keep their uniform share. Counts sum to
    ``budget`` and respect ``caps`` (pool sizes) when given."""
    abilities = list(verdicts)
    base, extra = divmod(budget, len(abilities))
    counts = {a: base + (1 if i < extra else 0) for i, a in enumerate(abilities)}
    cap = {a: (caps or {}).get(a, budget) for a in abilities}
    freed = 0
    for a in abilities:
        if counts[a] > cap[a]:  # a pool smaller than its uniform share
            freed += counts[a] - cap[a]
            counts[a] = cap[a]
        if verdicts[a] == "saturated" and math.isfinite(saturation[a]) and saturation[a] < counts[a]:
            keep = max(0, math.ceil(saturation[a]))
            freed += counts[a] - keep
            counts[a] = keep
    takers = [a for a in abilities if verdicts[a] == "growing"] or [a for a in abilities if verdicts[a] != "saturated"]
    takers = takers or abilities
    while freed > 0:
        room = [a for a in takers if counts[a] < cap[a]] or [a for a in abilities if counts[a] < cap[a]]
        if not room:
            raise ValueError(f"the pools cannot hold a budget of {budget}")
        share, rem = divmod(freed, len(room))
        for i, a in enumerate(room):
            give = min(share + (1 if i < rem else 0), cap[a] - counts[a])
            counts[a] += give
            freed -= give
    return counts


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(score, cost)`` no other point dominates (a score at least
    as high for a cost at most as high, one of them strictly), by increasing cost;
    of equal points the first is kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0], i))
    front, best = [], -math.inf
    for i in order:
        if points[i][0] > best:
            front.append(i)
            best = points[i][0]
    return front
