"""Comparable per-ability scores and the search objective (pure math, no I/O).

Abilities are scored by different metrics: ``exact_match`` for short answers
(higher is better, in [0, 1]) and held-out response ``loss`` for free text
(lower is better, in nats per token). Averaging them raw would let the metric's
scale, not the ability, decide the mixture. Each is therefore turned into the
**fraction of the gap closed** between the untrained base (the model before the
proxy fine-tune, evaluated once per optimization on the same held-out set) and
a perfect model:

- exact match, and ``choice`` (multiple-choice accuracy by likelihood ranking):
  ``(acc - acc_base) / (1 - acc_base)``  (1 when the base is already perfect); the base
  ranks at about chance, so ``choice`` measures what the mixture taught beyond it;
- loss: ``(loss_base - loss) / loss_base``  (the perfect model's loss is 0).

0 means "no better than the base", 1 "perfect", negative "worse than the base".
The reference is the ideal, not a second run, so the scale costs nothing and is
the same in every search, study and confirmation that uses this module. A loss
score never reaches 1 (text has entropy): weights, not the scale, should say how
much a free-text ability matters.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["METRICS", "normalized", "objective", "scores"]

METRICS = ("exact_match", "loss", "choice")


def normalized(metric: str, value: float, base: float) -> float:
    """The fraction of the gap between the base and a perfect model that ``value`` closes."""
    if metric in ("exact_match", "choice"):  # accuracies: of generations, of ranking candidates
        return 1.0 if base >= 1.0 else (value - base) / (1.0 - base)
    if metric == "loss":
        return 0.0 if base <= 0.0 else (base - value) / base
    raise ValueError(f"unknown metric {metric!r} (expected one of {', '.join(METRICS)})")


def scores(
    raw: Mapping[str, Mapping[str, float]], metrics: Mapping[str, str], base: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Normalized score per ability from raw evaluations ``{ability: {metric: value}}``."""
    return {a: normalized(m, raw[a][m], base[a][m]) for a, m in metrics.items()}


def objective(normalized_scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Weighted mean of normalized scores (weights need not sum to 1)."""
    total = sum(weights.values())
    return sum(w * normalized_scores[a] for a, w in weights.items()) / total
