"""Transference between abilities and ability complexity, as operational definitions
(pure numpy/scipy, no I/O).

The instruction-tuning dynamics study (DoIT) explains each ability's growth pace
by *task complexity* and *cross-ability transference* but its repository gives
no formula, so allocator defines both from the study's runs:

- **Transference of b to a**, ``T[a][b]``, from the *isolated* runs (only b's data,
  at each volume v of the grid): the gain of a's score when trained on b alone,
  relative to a's gain when trained on a alone, summed over the grid's positive
  volumes: ``T[a][b] = sum_v (y_a(b, v) - y_a(0)) / sum_v (y_a(a, v) - y_a(0))``
  (means over seeds). 1 on the diagonal; 0 means b's data does nothing for a, 1
  that it is as good as a's own, negative that it hurts. Undefined (NaN) when a's
  own data moves a by less than ``min_gain`` on average: there is no gain to be
  relative to.
- **Complexity** of a, from its growth curve (allocator.curves.growth): how much of the
  grid it needs for half of the gain it makes in the grid, on a log scale,
  ``log2(1 + v_half) / log2(1 + vmax)`` in [0, 1]; 1 for an ability that does not
  gain (resistant). The zero-shot score is not a second component: every
  normalized score (allocator.curves.scoring) measures the gap closed from the base's
  own score, so a high zero-shot score is already accounted for.

Whether these explain the growth pace is then a rank correlation (Spearman)
between each and the abilities' sensitivities.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RunScores", "base_scores", "complexity", "rank_correlation", "transference"]


@dataclass(frozen=True)
class RunScores:
    """One proxy run of a study: what it trained on and its normalized scores."""

    design: str  # "joint", "isolated" or "base"
    ability: str | None  # the trained ability of an isolated run
    volume: int
    seed: int
    scores: Mapping[str, float]


def _mean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return float(np.mean(xs)) if xs else math.nan


def base_scores(runs: Sequence[RunScores], abilities: Sequence[str]) -> dict[str, float]:
    """Each ability's mean score over the runs with no training data."""
    zero = [r for r in runs if r.volume == 0]
    if not zero:
        raise ValueError("no run at volume 0: transference is measured against the untrained score")
    return {a: _mean(r.scores[a] for r in zero) for a in abilities}


def transference(
    runs: Sequence[RunScores], abilities: Sequence[str], min_gain: float = 0.02
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """``(T, gains)``: ``T[a][b]`` as in the module doc and ``gains[a][b]``, the mean
    gain of a over the grid when trained on b alone (absolute, in score units)."""
    y0 = base_scores(runs, abilities)
    iso = [r for r in runs if r.design == "isolated" and r.volume > 0]
    volumes = sorted({r.volume for r in iso})
    gains: dict[str, dict[str, float]] = {a: {} for a in abilities}
    for b in abilities:
        at = [[r for r in iso if r.ability == b and r.volume == v] for v in volumes]
        for a in abilities:
            per_v = [_mean(r.scores[a] for r in rs) - y0[a] for rs in at if rs]
            gains[a][b] = _mean(per_v)
    t: dict[str, dict[str, float]] = {a: {} for a in abilities}
    for a in abilities:
        own = gains[a][a]
        for b in abilities:
            t[a][b] = gains[a][b] / own if own >= min_gain and not math.isnan(gains[a][b]) else math.nan
    return t, gains


def complexity(half_volume: float, vmax: float) -> float:
    """``log2(1 + v_half) / log2(1 + vmax)``, clipped to [0, 1] (module doc)."""
    if not math.isfinite(half_volume) or vmax <= 0:
        return 1.0
    return float(min(1.0, max(0.0, math.log2(1 + half_volume) / math.log2(1 + vmax))))


def rank_correlation(x: Mapping[str, float], y: Mapping[str, float]) -> dict[str, Any]:
    """Spearman's rho between two per-ability quantities over the abilities where both
    are finite: ``{"rho", "p", "n"}`` (rho and p are NaN for fewer than 3 abilities or
    a constant quantity)."""
    from scipy.stats import spearmanr

    keys = [k for k in x if k in y and math.isfinite(x[k]) and math.isfinite(y[k])]
    if len(keys) < 3 or len({x[k] for k in keys}) < 2 or len({y[k] for k in keys}) < 2:
        return {"rho": math.nan, "p": math.nan, "n": len(keys)}
    res = spearmanr([x[k] for k in keys], [y[k] for k in keys])
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": len(keys)}
