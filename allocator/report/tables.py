"""The tables a job prints at its end (and logs as text artifacts): the best mixture against the
uniform one, a recommendation, a confirmation, a study's growth table."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from allocator.curves.growth import FAR_BEYOND_GRID

__all__ = ["best_vs_uniform", "confirm_lines", "growth_table", "paired_stats", "recommendation_lines"]


def best_vs_uniform(best: Any, base: Any, metrics: Mapping[str, str]) -> list[str]:
    """Per ability: the metric, the counts and the scores of the best mixture and the uniform one."""
    w = max(10, *(len(a) for a in metrics))
    lines = [f"  {'ability':{w}s} {'metric':11s} {'count':>7s} {'uniform':>8s} {'score':>7s} {'uniform':>8s}"]
    for a, m in metrics.items():
        lines.append(
            f"  {a:{w}s} {m:11s} {best.mixture[a]:7d} {base.mixture[a]:8d} {best.scores[a]:7.3f} {base.scores[a]:8.3f}"
        )
    lines.append(f"  {'objective':{w}s} {'':11s} {'':7s} {'':8s} {best.objective:7.4f} {base.objective:8.4f}")
    return lines


def recommendation_lines(rec: Any, budget: int) -> list[str]:
    """A recommendation: counts, predictions with intervals, rationale, and its alternatives."""
    w = max(10, *(len(a) for a in rec.counts))
    lines = [f"recommendation for {budget:,} examples ({rec.method}):"]
    lines.append(f"  {'ability':{w}s} {'count':>7s} {'predicted':>9s} {'[90% CI]':>17s}  rationale")
    for a, n in rec.counts.items():
        p = rec.predicted[a]
        ci = f"[{p['lo']:.3f}, {p['hi']:.3f}]"
        lines.append(f"  {a:{w}s} {n:7d} {p['score']:9.3f} {ci:>17s}  {rec.rationale[a]}")
    o = rec.objective
    lines.append(f"  predicted objective {o['score']:.4f} [{o['lo']:.4f}, {o['hi']:.4f}]")
    for name, alt in rec.alternatives.items():
        counts = " ".join(f"{a}={n}" for a, n in alt["counts"].items())
        said = []
        if "objective" in alt:
            ao = alt["objective"]
            said.append(f"predicted {ao['score']:.4f} [{ao['lo']:.4f}, {ao['hi']:.4f}]")
        if alt.get("measured") is not None:
            said.append(f"measured {alt['measured']:.4f}")
        lines.append(f"  {name}: {', '.join(said)}  {counts}")
    if rec.extrapolated:
        lines.append(f"  (beyond the measured volumes, extrapolated: {', '.join(rec.extrapolated)})")
    return lines


def paired_stats(xs: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value) and the values."""
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "values": list(xs)}


def confirm_lines(result: Any) -> list[str]:
    """Objective per mixture (mean, std, per seed) and the paired difference to the first."""
    names = list(result.mixtures)
    w = max(10, *(len(n) for n in names))
    lines = [f"confirmed over {len(result.summary[names[0]]['objective']['values'])} fresh seeds:"]
    ref = names[0]
    for n in names:
        o = result.summary[n]["objective"]
        per = ", ".join(f"{v:.4f}" for v in o["values"])
        line = f"  {n:{w}s} objective {o['mean']:.4f} +- {o['std']:.4f}  ({per})"
        if n != ref:
            diffs = [a - b for a, b in zip(o["values"], result.summary[ref]["objective"]["values"], strict=True)]
            d = paired_stats(diffs)
            line += f"  vs {ref}: {d['mean']:+.4f} +- {d['std']:.4f} (paired by seed)"
        lines.append(line)
    return lines


def _f(x: Any, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def growth_table(analysis: Mapping[str, Any], abilities: Sequence[str]) -> list[str]:
    """The table printed at the end of a study and logged as ``growth_table.txt``."""
    w = max(10, *(len(a) for a in abilities))
    lines = []
    for design, curves in analysis["growth"].items():
        lines.append(f"{design} design (score = normalized, allocator.curves.scoring; 90% bootstrap intervals):")
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
