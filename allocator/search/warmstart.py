"""Warm start: seed a search with what a previous study or optimization measured.

``search.warm_start`` (or ``allocator optimize --warm-start``) names a result: the
``--output`` JSON of ``allocator study`` or ``allocator optimize``, or the MLflow
parent run that logged it (``study.json`` / ``recommendation.json``). It must have
been measured against the same untrained base on the same abilities (its base scores
must match: normalized scores are only comparable then).

- From a **study**: the study's tailored mixture for this budget
  (``allocator.recommend``) runs right after the uniform baseline; the growth-curve
  sampler also fits the study's points (its curves' data) and uses its transference
  matrix. Other samplers get the tailored trial only: the study's runs have other
  budgets, so their objectives are not points of this search's landscape.
- From an **optimization** with the same budget: its finished trials that used the
  whole budget join the Optuna study as completed trials (with their per-ability scores; objectives recomputed
  with this search's weights), so every sampler starts from them. They are not
  trained again and are not this search's trials.

Budgets in tokens are not supported yet (studies measure examples).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from allocator.errors import UserError
from allocator.report.results import result_kind

__all__ = ["WarmStart", "warm_start"]


@dataclass
class WarmStart:
    source: str
    kind: str  # "study" or "optimize"
    enqueue: dict[str, dict[str, int]] = field(default_factory=dict)  # label -> counts, run first
    trials: list[dict[str, Any]] = field(default_factory=list)  # {"mixture", "scores", "objective"}
    prior: dict[str, list[tuple[float, float]]] | None = None  # growth sampler: (volume, score) per ability
    transfer: dict[str, dict[str, float]] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "enqueued": self.enqueue,
            "trials_added": len(self.trials),
            "prior_points": sum(len(v) for v in (self.prior or {}).values()),
            "transfer": self.transfer is not None,
        }


def _same_base(theirs: Mapping[str, Mapping[str, float]], ours: Mapping[str, Mapping[str, float]]) -> bool:
    return all(
        set(theirs.get(a, {})) == set(s) and all(math.isclose(theirs[a][k], v, abs_tol=1e-6) for k, v in s.items())
        for a, s in ours.items()
    )


def warm_start(
    result: Mapping[str, Any],
    source: str,
    *,
    budget: int,
    unit: str,
    abilities: list[str],
    caps: Mapping[str, int],
    weights: Mapping[str, float],
    base_scores: Mapping[str, Mapping[str, float]],
    minimum: Mapping[str, int] | None = None,
) -> WarmStart:
    """What a study or optimization result contributes to a search (module doc);
    ``UserError`` when it cannot contribute soundly. ``caps`` and ``minimum`` are this
    search's per-ability bounds: the tailored mixture respects them, and an earlier
    optimization's trials outside them are not points of this search's space."""
    from allocator.curves import scoring

    what = f"warm start {source}"
    if unit != "examples":
        raise UserError(f"{what}: needs budget_unit examples (token budgets are not supported yet)")
    kind = result_kind(result)
    if kind not in ("study", "optimize"):
        raise UserError(f"{what}: neither a study nor an optimize result (no 'analysis' or 'trials')")
    theirs = list(result.get("abilities") or result.get("base_scores", {}))
    if sorted(theirs) != sorted(abilities):
        raise UserError(f"{what}: its abilities ({', '.join(theirs)}) are not this pool's ({', '.join(abilities)})")
    if not _same_base(result.get("base_scores", {}), base_scores):
        raise UserError(
            f"{what}: was measured against a different untrained base (its base scores differ): it must come "
            "from the same data, model and pretraining config"
        )
    if kind == "study":
        from allocator.recommendation import recommend
        from allocator.studies.analysis import prior_from_study

        rec = recommend(result, budget=budget, weights=weights, minimum=minimum, maximum=caps)
        analysis = result["analysis"]
        own = analysis.get("own_design")
        t = analysis.get("transference", {}).get("matrix") if own == "isolated" else None
        # the points of the curves the recommendation used: that design's runs alone
        return WarmStart(source, kind, {"study-tailored": rec.counts}, [], prior_from_study(result, own), t)
    their_budget = int(result.get("config", {}).get("budget", -1))
    if their_budget != budget or result.get("config", {}).get("budget_unit", "examples") != unit:
        raise UserError(
            f"{what}: an optimization with budget {their_budget}, this search has {budget}: only the same "
            "budget's trials are points of this landscape (a study warm-starts any budget)"
        )
    trials = []
    low = dict(minimum or {})
    for t in result["trials"]:
        # a multi-objective search's cheaper mixtures are not points of a full-budget landscape
        if t.get("status") == "FINISHED" and t.get("scores") and sum(t["mixture"].values()) == budget:
            if any(not low.get(a, 0) <= int(t["mixture"][a]) <= int(caps[a]) for a in abilities):
                continue  # outside this search's bounds: not a point of its space
            scores = {a: float(t["scores"][a]) for a in abilities}
            obj = scoring.objective(scores, weights)
            trials.append({"mixture": {a: int(t["mixture"][a]) for a in abilities}, "scores": scores, "objective": obj})
    if not trials:
        raise UserError(f"{what}: has no finished trial of this budget within this search's bounds")
    return WarmStart(source, kind, {}, trials)
