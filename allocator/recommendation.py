"""5. Curves -> recommendation: ``allocator.recommend``, a study's curves -> counts per ability
for a budget.

No training: the counts maximize the weighted predicted score of
allocator.curves.allocation (own growth curves plus transference), within each
ability's pool. A ``resistant`` ability's curve counts as flat: its data earns
nothing predictable. Each prediction comes with a 90% interval from the study's
bootstrap curves (the transference matrix is held at its estimate), and each
ability with a one-line rationale from its verdict (allocator.curves.growth). An
optimization's result works too: the growth-curve model (allocator.curves.model) is
fitted to its trials.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from allocator.curves.allocation import doit_rule, predicted_scores, tailored_allocation
from allocator.curves.growth import FAR_BEYOND_GRID, predict
from allocator.errors import UserError
from allocator.report.results import result_kind

__all__ = ["Recommendation", "recommend"]


@dataclass
class Recommendation:
    counts: dict[str, int]
    predicted: dict[str, dict[str, float]]  # ability -> {"score", "lo", "hi"}
    objective: dict[str, float]  # {"score", "lo", "hi"}
    rationale: dict[str, str]
    extrapolated: list[str]  # abilities given more than the study measured
    alternatives: dict[str, dict[str, Any]]  # "uniform", "doit_rule": counts and predicted objective
    method: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _curve(g: Mapping[str, Any], params: Mapping[str, float] | None = None) -> Any:
    """The curve the allocation uses: a resistant ability's is flat at its base (its
    fitted slope is noise; chasing it would spend budget on nothing)."""
    model, p = g["curve"]["model"], dict(params if params is not None else g["curve"]["params"])
    if g["verdict"] == "resistant":
        y0 = float(predict(model, p, 0.0))
        return lambda v: np.full(np.shape(v), y0)
    return lambda v: predict(model, p, v)


def _load(study_result: Any) -> dict[str, Any]:
    if hasattr(study_result, "to_dict"):
        return study_result.to_dict()
    if isinstance(study_result, str | Path):
        p = Path(study_result)
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise UserError(f"{p}: not a study result (not UTF-8 text, byte {e.start})") from None
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{p}: cannot read a study result: {e}") from None
        if not isinstance(obj, dict):
            raise UserError(f"{p}: not a study result (expected a JSON object, got {type(obj).__name__})")
        return obj
    return dict(study_result)


_NEEDED = ("abilities", "weights", "caps", "analysis")


def _checked(s: Mapping[str, Any], source: Any) -> Mapping[str, Any]:
    missing = [k for k in _NEEDED if k not in s]
    if missing or "growth" not in s.get("analysis", {}):
        what = source if isinstance(source, str | Path) else "the given object"
        raise UserError(f"{what}: not a study result (missing {(missing or ['analysis.growth'])[0]!r})")
    return s


def _rationale(g: Mapping[str, Any], n: int) -> str:
    sat = g["saturation_volume"]
    if sat is None:
        sat_s = "no plateau in the fitted model"
    elif sat > FAR_BEYOND_GRID * g["vmax"]:
        sat_s = f"90% of its plateau past {FAR_BEYOND_GRID * g['vmax']:.0f} examples ({FAR_BEYOND_GRID}x the grid)"
    else:
        sat_s = f"90% of its plateau at ~{sat:.0f} examples"
    if g["verdict"] == "resistant":
        return f"resistant: gains {g['gain']:+.3f} over the grid (below the study's min_gain); given {n}"
    if g["verdict"] == "saturated":
        return f"saturated: {sat_s}; given {n}"
    return f"still growing at {g['vmax']:.0f} examples ({sat_s}); given {n}"


def _checked_request(
    source: str,
    abilities: list[str],
    weights: Mapping[str, float],
    minimum: Mapping[str, int] | None,
    maximum: Mapping[str, int] | None,
    pool_caps: Mapping[str, int],
    budget: int,
) -> dict[str, int]:
    """The per-ability caps (pool capacity, lowered by ``maximum``) after checking that
    the request names only known abilities and that ``budget`` fits under the caps."""
    for name, d in (("weights", weights), ("minimum", minimum or {}), ("maximum", maximum or {})):
        unknown = [a for a in d if a not in abilities]
        if unknown:
            known = ", ".join(abilities)
            raise UserError(f"recommend: {name} names {unknown[0]!r}, not an ability of the {source} ({known})")
    caps = {a: min(int(pool_caps[a]), int((maximum or {}).get(a, pool_caps[a]))) for a in abilities}
    if budget <= 0 or budget > sum(caps.values()):
        raise UserError(f"recommend: budget {budget:,} must be in 1..{sum(caps.values()):,} (the pools' capacity)")
    return caps


def recommend(
    study_result: Any,
    *,
    budget: int,
    weights: Mapping[str, float] | None = None,
    minimum: Mapping[str, int] | None = None,
    maximum: Mapping[str, int] | None = None,
    design: str | None = None,
) -> Recommendation:
    """Counts per ability summing to ``budget`` from a study (a ``StudyResult``, its
    dict, or the path of its ``--output`` JSON); ``weights`` default to the study's.
    ``design`` picks the study's curves: ``isolated`` (each ability's own data, plus the
    transference matrix; the default when it ran) or ``joint`` (every ability at the
    same volume: interference and transfer inside the curves, no matrix). An
    optimization's result works too (``_from_search``): growth curves are fitted to
    its finished trials."""
    loaded = _load(study_result)
    if result_kind(loaded) == "optimize":
        if design is not None:
            raise UserError(f"recommend: design {design!r} picks a study's curves; an optimization's result has none")
        return _from_search(loaded, budget, weights, minimum, maximum)
    s = _checked(loaded, study_result)
    abilities: list[str] = s["abilities"]
    analysis = s["analysis"]
    own = design or analysis["own_design"]
    if own not in analysis["growth"]:
        raise UserError(f"recommend: the study has no {own} design (it ran {', '.join(analysis['growth'])})")
    growth = analysis["growth"][own]
    w = dict(weights) if weights is not None else dict(s["weights"])
    caps = _checked_request("study", abilities, w, minimum, maximum, s["caps"], budget)
    total_w = sum(w.get(a, 0.0) for a in abilities)
    if total_w <= 0:
        raise UserError("recommend: weights must not all be zero")
    w = {a: w.get(a, 0.0) / total_w for a in abilities}
    t = analysis.get("transference", {}).get("matrix") if own == "isolated" else None
    curves = {a: _curve(growth[a]) for a in abilities}
    try:
        counts = tailored_allocation(curves, t, budget, weights=w, minimum=minimum, maximum=caps, ceiling=1.0)
    except ValueError as e:
        raise UserError(f"recommend: {e}") from None

    def summarize(n: Mapping[str, int]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        point = predicted_scores(n, curves, t, ceiling=1.0)
        draws = min(len(growth[a]["boot"]) for a in abilities)
        boot = [
            predicted_scores(n, {a: _curve(growth[a], growth[a]["boot"][i]) for a in abilities}, t, ceiling=1.0)
            for i in range(draws)
        ]
        pred = {}
        for a in abilities:
            lo, hi = np.quantile([b[a] for b in boot], [0.05, 0.95]) if boot else (math.nan, math.nan)
            pred[a] = {"score": point[a], "lo": float(lo), "hi": float(hi)}
        objs = [sum(w[a] * b[a] for a in abilities) for b in boot]
        lo, hi = np.quantile(objs, [0.05, 0.95]) if objs else (math.nan, math.nan)
        return pred, {"score": sum(w[a] * point[a] for a in abilities), "lo": float(lo), "hi": float(hi)}

    predicted, objective = summarize(counts)
    base, extra = divmod(budget, len(abilities))
    uniform = {a: base + (1 if i < extra else 0) for i, a in enumerate(abilities)}
    saturation = {a: growth[a]["saturation_volume"] for a in abilities}
    doit = doit_rule(
        {a: growth[a]["verdict"] for a in abilities},
        {a: math.inf if v is None else v for a, v in saturation.items()},
        budget,
        caps,
    )
    alternatives = {
        name: {"counts": n, "objective": summarize(n)[1]} for name, n in (("uniform", uniform), ("doit_rule", doit))
    }
    return Recommendation(
        counts=counts,
        predicted=predicted,
        objective=objective,
        rationale={a: _rationale(growth[a], counts[a]) for a in abilities},
        extrapolated=[a for a in abilities if counts[a] > growth[a]["vmax"]],
        alternatives=alternatives,
        method=(
            "exact maximum of the weighted predicted score (allocator.curves.allocation) from the study's "
            f"{own} growth curves{' and transference matrix' if t is not None else ''}; "
            "90% intervals from its bootstrap curves"
        ),
    )


def _from_search(
    r: Mapping[str, Any],
    budget: int,
    weights: Mapping[str, float] | None,
    minimum: Mapping[str, int] | None,
    maximum: Mapping[str, int] | None,
) -> Recommendation:
    """A recommendation from an optimization's trials, without training: the growth-curve
    model (allocator.curves.model: one curve per ability, anchored at the base, fitted to
    every finished trial's count and score; bootstrap over trials), maximized exactly
    at ``budget``. Its trials all had the search's budget, so the model knows each
    ability's curve over the counts the search tried; counts beyond them are flagged as
    extrapolated, and a budget far from the search's also changes the training steps,
    which the curves do not model."""
    from allocator.curves.model import GrowthModel

    done = [t for t in r["trials"] if t.get("status") == "FINISHED" and t.get("scores")]
    if len(done) < 2:
        raise UserError("recommend: the optimization has fewer than 2 finished trials to fit curves to")
    abilities = list(done[0]["scores"])
    cfg = r.get("config", {})
    w = dict(weights) if weights is not None else dict(cfg.get("weights") or {a: 1.0 for a in abilities})
    repeats = int((cfg.get("data") or {}).get("max_repeats", 1))
    pool = r.get("pool", {}).get("abilities", {})
    pool_caps = {a: int(pool.get(a, {}).get("train", budget)) * repeats for a in abilities}
    caps = _checked_request("search", abilities, w, minimum, maximum, pool_caps, budget)
    try:
        model = GrowthModel(budget, caps, weights=w, minimum=minimum, draws=200, seed=0)
    except ValueError as e:
        raise UserError(f"recommend: {e}") from None
    allocations = [{a: float(t["mixture"][a]) for a in abilities} for t in done]
    scores = [{a: float(t["scores"][a]) for a in abilities} for t in done]
    curves, boot = model.fit(allocations, scores)
    counts = model.optimum(curves)
    seen = {a: max(x[a] for x in allocations) for a in abilities}

    def summarize(n: Mapping[str, int]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        pred = {}
        for a in abilities:
            draws = [float(b[a](float(n[a]))) for b in boot]
            lo, hi = np.quantile(draws, [0.05, 0.95])
            pred[a] = {"score": float(curves[a](float(n[a]))), "lo": float(lo), "hi": float(hi)}
        objs = [model.predicted_objective(n, b) for b in boot]
        lo, hi = np.quantile(objs, [0.05, 0.95])
        return pred, {"score": model.predicted_objective(n, curves), "lo": float(lo), "hi": float(hi)}

    def why(a: str) -> str:
        f = curves[a]
        sat = f.volume_reaching(0.9)
        gain = float(f(seen[a]) - f(0.0))
        if gain < 0.02:
            return f"flat: gains {gain:+.3f} up to {seen[a]:.0f} examples; given {counts[a]}"
        if float(f(seen[a])) >= 0.99:
            return f"predicted perfect within the counts tried (up to {seen[a]:.0f}); given {counts[a]}"
        if math.isfinite(sat) and sat <= seen[a]:
            return f"saturated: 90% of its plateau at ~{sat:.0f} examples; given {counts[a]}"
        return f"still growing at {seen[a]:.0f} examples (the most any trial gave it); given {counts[a]}"

    predicted, objective = summarize(counts)
    best = r["best"]
    alternatives = {
        "uniform": {"counts": r["baselines"]["uniform"]["mixture"], "measured": r["baselines"]["uniform"]["objective"]},
        "search_best": {"counts": best["mixture"], "measured": best["objective"], "origin": best.get("origin")},
    }
    for alt in alternatives.values():
        if sum(alt["counts"].values()) == budget:
            alt["objective"] = summarize(alt["counts"])[1]
    return Recommendation(
        counts=counts,
        predicted=predicted,
        objective=objective,
        rationale={a: why(a) for a in abilities},
        extrapolated=[a for a in abilities if counts[a] > seen[a]],
        alternatives=alternatives,
        method=(
            f"exact maximum of the weighted predicted score of growth curves fitted to the optimization's "
            f"{len(done)} finished trials (allocator.curves.model); 90% intervals from 200 bootstrap refits over trials"
        ),
    )
