"""A study's runs -> growth curves, transference, complexity (pure functions of its records).

The math lives in allocator.curves.growth and allocator.curves.transference; the table
and the figures of a study are in allocator.report. The *own* curve of an
ability, used for complexity and the tailored allocation, comes from the
isolated design when it ran (its own data only, so transference is separate)
and from the joint design otherwise. Curves are fitted under the normalized
score's ceiling of 1 (a perfect model; allocator.curves.growth).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from allocator.config import StudyConfig
from allocator.curves.growth import describe
from allocator.curves.transference import RunScores, complexity, rank_correlation, transference

__all__ = ["analyze", "clean", "points", "prior_from_study"]


def clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become None (JSON has no inf or NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    return x


def points(records: Sequence[Mapping[str, Any]], design: str, ability: str, seeds: int) -> tuple[list, list]:
    """``(volumes, scores)`` of ``ability`` in ``design``; the base is ``seeds`` points at (0, 0)."""
    vs, ys = [0.0] * seeds, [0.0] * seeds
    for r in records:
        if r["design"] == design and (design == "joint" or r["ability"] == ability):
            vs.append(float(r["mixture"][ability]))
            ys.append(float(r["scores"][ability]))
    return vs, ys


def analyze(
    records: Sequence[Mapping[str, Any]], abilities: Sequence[str], study: StudyConfig, seeds: int
) -> dict[str, Any]:
    """Fit and derive everything the report, the figures and ``recommend`` need."""
    growth: dict[str, dict[str, Any]] = {}
    for design in study.designs:
        growth[design] = {}
        for i, a in enumerate(abilities):
            vs, ys = points(records, design, a, seeds)
            g, boot = describe(
                vs, ys, min_gain=study.min_gain, draws=study.bootstrap, seed=i, models=study.models, ceiling=1.0
            )
            growth[design][a] = {**g.to_dict(), "boot": [b.params for b in boot], "points": {"v": vs, "y": ys}}
    own = "isolated" if "isolated" in study.designs else "joint"
    out: dict[str, Any] = {"own_design": own, "volumes": list(study.volumes), "growth": growth}
    comp = {
        a: complexity(
            growth[own][a]["half_volume"] if growth[own][a]["verdict"] != "resistant" else math.inf,
            growth[own][a]["vmax"],
        )
        for a in abilities
    }
    sens = {a: growth[own][a]["sensitivity"] for a in abilities}
    out["complexity"] = comp
    out["correlations"] = {"complexity_vs_sensitivity": rank_correlation(comp, sens)}
    if "isolated" in study.designs:
        runs = [RunScores("base", None, 0, 0, dict.fromkeys(abilities, 0.0))]
        runs += [RunScores(r["design"], r["ability"], r["volume"], r["seed"], r["scores"]) for r in records]
        t, gains = transference([r for r in runs if r.design in ("base", "isolated")], abilities, study.min_gain)
        t_in = {a: _nanmean([t[a][b] for b in abilities if b != a]) for a in abilities}
        t_out = {b: _nanmean([t[a][b] for a in abilities if a != b]) for b in abilities}
        out["transference"] = {"matrix": t, "gains": gains, "in": t_in, "out": t_out}
        out["correlations"]["transference_in_vs_sensitivity"] = rank_correlation(t_in, sens)
        out["correlations"]["transference_out_vs_sensitivity"] = rank_correlation(t_out, sens)
    return clean(out)


def _nanmean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return float(np.mean(xs)) if xs else math.nan


def prior_from_study(study: Mapping[str, Any], design: str | None = None) -> dict[str, list[tuple[float, float]]]:
    """Per ability, ``(volume, score)`` of every finished run of a study result (its
    dict) that trained that ability or nothing (the base): the points of its growth
    curves. ``design`` keeps one design's runs: an isolated run's score is the ability's
    own data alone (what a fit less a transference matrix models), a joint run's
    includes the transfer from the other abilities at the same volume (what a search's
    mixtures see); mixing the two would fit one curve to two regimes."""
    out: dict[str, list[tuple[float, float]]] = {a: [] for a in study["abilities"]}
    for r in study["runs"]:
        if r.get("status", "FINISHED") != "FINISHED":
            continue
        if design is not None and r.get("design", design) != design:
            continue
        trained = any(n > 0 for n in r["mixture"].values())
        for a in out:
            if r["mixture"][a] > 0 or not trained:
                out[a].append((float(r["mixture"][a]), float(r["scores"][a])))
    return out
