"""What a search recommends from its trials (pure functions of the records): the floor, the
best eligible mixture, the (objective, examples) Pareto front, and what early stopping saved."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from allocator.curves.allocation import pareto_front
from allocator.trial.record import Status, TrialRecord

__all__ = ["choose_best", "compute_stats", "mark_floor", "pareto"]


def mark_floor(records: Sequence[TrialRecord], baseline: TrialRecord, floor: float, out: Callable[[str], None]) -> None:
    """Mark the searched trials with an ability more than ``floor`` below the uniform
    mixture's score (their ``violations``): they are reported, never recommended."""
    for r in records:
        if r.kind == "search" and r.status is Status.FINISHED:
            r.violations = [a for a, s in r.scores.items() if s < baseline.scores[a] - floor]
    bad = [r for r in records if r.violations]
    if bad:
        out(f"floor ({floor} below the uniform mixture's score): {len(bad)} trials violate it, not recommended:")
        for r in bad:
            below = ", ".join(f"{a} {r.scores[a]:.3f} < {baseline.scores[a] - floor:.3f}" for a in r.violations)
            out(f"  {r.name}: {below}")


def choose_best(records: Sequence[TrialRecord], baseline: TrialRecord) -> TrialRecord:
    """The searched trial that finished with the best objective and breaks no floor; the
    uniform baseline when none is eligible. A trial stopped early is never the best: its
    objective is partial."""
    eligible = [r for r in records if r.kind == "search" and r.status is Status.FINISHED and not r.violations]
    return max(eligible, key=lambda r: r.objective or 0.0) if eligible else baseline


def pareto(records: Sequence[TrialRecord], best: TrialRecord, out: Callable[[str], None]) -> dict[str, Any]:
    """The (objective, examples) Pareto front of the finished trials that may be
    recommended, and the cheapest mixture within 1, 2 and 5% of the best objective."""
    ok = [r for r in records if r.status is Status.FINISHED and not r.violations and r.objective is not None]
    idx = pareto_front([(r.objective, sum(r.mixture.values())) for r in ok])  # type: ignore[misc]
    front = [ok[i] for i in idx]
    top = best.objective or 0.0
    cheapest = {}
    for pct in (1, 2, 5):
        within = [r for r in front if (r.objective or 0.0) >= top - abs(top) * pct / 100]
        cheapest[f"{pct}%"] = within[0].name if within else None
    out("Pareto front (objective vs examples trained):")
    for r in front:
        out(f"  {r.name:16s} {sum(r.mixture.values()):7,d} examples  objective {r.objective:.4f}")
    out("cheapest within " + ", ".join(f"{k} of the best: {v}" for k, v in cheapest.items()))
    return {
        "front": [{"name": r.name, "examples": sum(r.mixture.values()), "objective": r.objective} for r in front],
        "cheapest_within": cheapest,
    }


def compute_stats(records: Sequence[TrialRecord]) -> dict[str, Any]:
    """Optimizer steps trained vs. what every trial trained in full would have cost (each
    trial's own full run: a multi-objective search's smaller mixtures train fewer steps
    by design, which early stopping did not save): what early stopping saved."""
    ran = [r for r in records if r.steps is not None]
    trained = sum(r.steps or 0 for r in ran)
    would = sum(r.steps_total or r.steps or 0 for r in ran)
    return {
        "early_stopped": sum(r.status is Status.EARLY_STOPPED for r in records),
        "steps_trained": trained,
        "steps_without_early_stopping": would,
        "compute_saved": round(1.0 - trained / would, 4) if would else 0.0,
    }
