"""A study's runs -> growth curves, transference, complexity, and their report.

Pure functions of the run records (allocator.study) plus the figures; the math
lives in allocator.growth and allocator.transference. The *own* curve of an
ability, used for complexity and the tailored allocation, comes from the
isolated design when it ran (its own data only, so transference is separate)
and from the joint design otherwise. Curves are fitted under the normalized
score's ceiling of 1 (a perfect model; allocator.growth).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from allocator.config import StudyConfig
from allocator.growth import FAR_BEYOND_GRID, describe
from allocator.transference import RunScores, complexity, rank_correlation, transference

__all__ = ["analyze", "artifacts", "clean", "points", "summary_lines"]


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


def _f(x: Any, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def summary_lines(analysis: Mapping[str, Any], abilities: Sequence[str]) -> list[str]:
    """The table printed at the end of a study and logged as ``growth_table.txt``."""
    w = max(10, *(len(a) for a in abilities))
    lines = []
    for design, curves in analysis["growth"].items():
        lines.append(f"{design} design (score = normalized, allocator.scoring; 90% bootstrap intervals):")
        lines.append(
            f"  {'ability':{w}s} {'model':6s} {'gain':>6s} {'[90% CI]':>15s} {'sens/2x':>7s} {'sat.vol':>8s}"
            f" {'verdict':9s} {'complexity':>10s} {'T in':>6s}"
        )
        for a in abilities:
            g = curves[a]
            ci = f"[{_f(g['gain_ci'][0])}, {_f(g['gain_ci'][1])}]"
            sat = g["saturation_volume"]
            if sat is None:
                sat_s = "-"
            elif sat > FAR_BEYOND_GRID * g["vmax"]:
                sat_s = f">{FAR_BEYOND_GRID * g['vmax']:.0f}*"
            else:
                sat_s = f"{sat:.0f}" + ("*" if sat > g["vmax"] else "")
            t_in = analysis.get("transference", {}).get("in", {}).get(a) if design == analysis["own_design"] else None
            comp = analysis["complexity"][a] if design == analysis["own_design"] else None
            lines.append(
                f"  {a:{w}s} {g['curve']['model']:6s} {g['gain']:6.3f} {ci:>15s} {g['sensitivity']:7.3f}"
                f" {sat_s:>8s} {g['verdict']:9s} {_f(comp, '10.2f'):>10s} {_f(t_in, '6.2f'):>6s}"
            )
    lines.append(
        "  (sens/2x: largest gain over one doubling; sat.vol: 90% of the asymptotic gain,"
        " * beyond the grid, >N past 10x its top)"
    )
    if "transference" in analysis:
        t = analysis["transference"]["matrix"]
        lines.append("transference T[a][b] (rows a: gain when trained on b alone / gain on its own data):")
        lines.append(f"  {'':{w}s} " + " ".join(f"{b[:7]:>7s}" for b in abilities))
        for a in abilities:
            lines.append(f"  {a:{w}s} " + " ".join(f"{_f(t[a][b], '7.2f'):>7s}" for b in abilities))
    for name, c in analysis["correlations"].items():
        lines.append(f"spearman {name}: rho {_f(c['rho'], '.2f')} (p {_f(c['p'], '.2f')}, n {c['n']})")
    return lines


def artifacts(
    records: Sequence[Mapping[str, Any]], analysis: Mapping[str, Any], abilities: Sequence[str]
) -> list[tuple[str, Any]]:
    """``(file name, matplotlib figure)``: the growth curves with their bands, and the
    transference heatmap."""
    import matplotlib

    matplotlib.use("Agg")  # no display; figures are written to MLflow
    import matplotlib.pyplot as plt

    from allocator.growth import predict

    figs = []
    cols = min(4, len(abilities))
    rows = math.ceil(len(abilities) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    colors = {"joint": "tab:blue", "isolated": "tab:orange"}
    for ax, a in zip(axes.flat, abilities, strict=False):
        for design, curves in analysis["growth"].items():
            g = curves[a]
            vs, ys = np.asarray(g["points"]["v"]), np.asarray(g["points"]["y"])
            x = np.geomspace(1, max(float(vs.max()), 2.0), 200)
            model = g["curve"]["model"]
            band = np.array([predict(model, p, x) for p in g["boot"]])
            lo, hi = np.quantile(band, [0.05, 0.95], axis=0)
            c = colors.get(design, "tab:gray")
            ax.fill_between(x, lo, hi, color=c, alpha=0.2)
            ax.plot(x, predict(model, g["curve"]["params"], x), color=c, label=f"{design} ({model})")
            ax.scatter(np.maximum(vs, 1), ys, color=c, s=10)
        ax.set_xscale("log", base=2)
        ax.set_title(a)
        ax.set_xlabel("examples of this ability (0 plotted at 1)")
        ax.set_ylabel("normalized score")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(abilities) :]:
        ax.axis("off")
    fig.tight_layout()
    figs.append(("growth_curves.png", fig))
    if "transference" in analysis:
        t = analysis["transference"]["matrix"]
        m = np.array([[np.nan if t[a][b] is None else t[a][b] for b in abilities] for a in abilities], dtype=float)
        fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(abilities), 0.8 + 0.7 * len(abilities)))
        im = ax.imshow(m, cmap="RdBu", vmin=-1.5, vmax=1.5)
        ax.set_xticks(range(len(abilities)), abilities, rotation=45, ha="right")
        ax.set_yticks(range(len(abilities)), abilities)
        ax.set_xlabel("trained on b alone")
        ax.set_ylabel("scored on a")
        for i in range(len(abilities)):
            for j in range(len(abilities)):
                if not np.isnan(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
        fig.colorbar(im, ax=ax, label="T[a][b]")
        fig.tight_layout()
        figs.append(("transference.png", fig))
    return figs
