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
    """A confirmation's table: per measurement (proxy, target) each mixture's objective (mean,
    std, per seed) and its paired difference to uniform and proportional (relative, with its
    interval and Holm-corrected p); the proxy-to-target rank agreement, the winner's curse,
    the strategies and the champion."""
    names = list(result.mixtures)
    w = max(12, *(len(n) for n in names))
    seeds = result.seeds or []
    lines = [f"confirmed {len(names)} mixtures over {len(seeds) or '?'} fresh seeds ({', '.join(map(str, seeds))}):"]
    for label, summary, st in (("proxy", result.summary, "proxy"), ("target", result.target, "target")):
        if summary is None:
            continue
        lines.append(f" on the {label}:")
        comps = (result.comparisons or {}).get(st, {})
        for n in names:
            o = summary[n]["objective"]
            per = ", ".join(f"{v:.4f}" for v in o["values"])
            line = f"  {n:{w}s} objective {o['mean']:.4f} +- {o['std']:.4f}  ({per})"
            for ref, cs in comps.items():
                if n in cs:
                    line += f"  vs {ref}: {_relative(cs[n], summary[ref]['objective']['mean'])}"
            lines.append(line)
    fid = result.fidelity or {}
    if "fresh_proxy" in fid:
        f = fid["fresh_proxy"]
        lines.append(
            f" proxy-to-target ranking of the {f['n']} mixtures (means): Spearman {_f(f['spearman'], '.2f')} "
            f"{_interval(f['spearman_ci'])}, Kendall {_f(f['kendall'], '.2f')} {_interval(f['kendall_ci'])} "
            "(95% bootstrap)"
        )
    if "search_estimate" in fid:
        f = fid["search_estimate"]
        lines.append(
            f"   the search's own estimates vs the target, {f['n']} mixtures: Spearman {_f(f['spearman'], '.2f')}, "
            f"Kendall {_f(f['kendall'], '.2f')}"
        )
    c = result.winners_curse
    if c:
        said = f" winner's curse: the search measured {c['mixture']} ({c['trial']}) at {c['search_estimate']:.4f}"
        if c.get("search_vs_uniform") is not None:
            said += f", {c['search_vs_uniform']:+.1%} over its uniform baseline"
        rank = f"rank {c['proxy_rank']} of {c['mixtures']}"
        said += f"; fresh proxy runs: {c['proxy_mean']:.4f} ({_pct(c['proxy_vs_uniform'])} over uniform, {rank})"
        if "target_mean" in c:
            rank = f"rank {c['target_rank']} of {c['mixtures']}"
            said += f"; the target: {_pct(c['target_vs_uniform'])} over uniform ({rank})"
        lines.append(said)
    for note in result.notes or []:
        lines.append(f" note: {note}")
    if result.strategies:
        versions = ", ".join(f"{s['name']} v{s['version']}" for s in result.strategies)
        lines.append(f" strategies (MLflow Model Registry): {versions}")
    if result.champion:
        ch = result.champion
        now = f"champion: version {ch['alias']} ({ch.get('name')})" if ch.get("alias") else "champion unchanged"
        lines.append(f" {now}: {ch['reason']}")
    return lines


def strategy_lines(strategies: Sequence[Mapping[str, Any]], experiment: str) -> list[str]:
    """``allocator strategies``: best first, each with its evidence against uniform."""
    if not strategies:
        return [f"no strategies in experiment {experiment!r} yet (allocator confirm registers them)"]
    lines = [f"strategies of experiment {experiment!r} (MLflow Model Registry), best first:"]
    for s in strategies:
        on, m = s["confirmed_on"], s["metrics"]
        alias = f" [{', '.join(s['aliases'])}]" if s["aliases"] else ""
        mean, std = m.get(f"{on}/objective_mean"), m.get(f"{on}/objective_std")
        shown = f"{mean:.4f} +- {std:.4f}" if mean is not None and std is not None else "-"
        rel, p = m.get(f"{on}/vs_uniform/relative"), m.get(f"{on}/vs_uniform/p_holm")
        vs = f"{_pct(rel)} vs uniform (p {p:.3g}, Holm)" if rel is not None and p is not None else "(the baseline)"
        counts = ", ".join(f"{a}={n}" for a, n in s["mixture"].items())
        lines.append(f"  v{s['version']}{alias} {s['name']}: on the {on} {shown}, {vs}  {counts}  run {s['run_id']}")
    return lines


def _pct(x: Any) -> str:
    return "-" if x is None or x != x else f"{x:+.1%}"


def _interval(ci: Any) -> str:
    lo, hi = ci
    return "[-]" if lo != lo or hi != hi else f"[{lo:.2f}, {hi:.2f}]"


def _relative(c: Mapping[str, Any], ref_mean: float) -> str:
    """A paired comparison as its relative difference, interval and Holm-corrected p."""
    rel = c["relative"]
    if ref_mean and c["ci"][0] == c["ci"][0]:
        lo, hi = (x / ref_mean for x in c["ci"])
        span = f" [{lo:+.1%}, {hi:+.1%}]"
    else:
        span = ""
    p = c.get("p_holm", c["p"])
    shown = f"p {p:.3g}" if p == p else "p -"
    return f"{_pct(rel)}{span} {shown}"


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
