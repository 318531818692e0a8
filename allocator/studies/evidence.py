"""How confirmed mixtures compare, pure statistics (no I/O): paired differences across seeds,
Holm's correction over the comparisons made, and how well the proxy's ranking of mixtures
holds on the target (Spearman and Kendall, with bootstrap intervals).

Every mixture of a confirmation is trained with the same seeds, so two mixtures' objectives
pair by seed: ``paired_comparison`` tests their mean difference with a paired t-test and
gives its t confidence interval and the difference relative to the reference's mean. Several
such tests at once inflate false positives; ``holm`` adjusts their p-values (Holm 1979:
uniformly more powerful than Bonferroni, with the same family-wise error control).
``rank_agreement`` measures whether the proxy ranks mixtures as the target does; its
intervals resample the mixtures (a percentile bootstrap), since few mixtures make a
correlation's sampling error large.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["choose_champion", "compare_to_references", "holm", "paired_comparison", "rank_agreement"]


def paired_comparison(values: Sequence[float], reference: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """``values`` against ``reference``, paired by position (seed): the mean difference, its
    ``level`` confidence interval (t distribution), the two-sided paired t-test's p-value, and
    the difference relative to the reference's mean (``relative``; NaN when that mean is 0).
    With fewer than 2 pairs, or no variation in the differences, the interval and p are NaN
    (a difference without spread is not evidence)."""
    from scipy import stats

    if len(values) != len(reference):
        raise ValueError(f"paired values need equal lengths, got {len(values)} and {len(reference)}")
    diffs = [a - b for a, b in zip(values, reference, strict=True)]
    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    ref_mean = statistics.fmean(reference) if reference else math.nan
    out: dict[str, Any] = {
        "n": n,
        "mean_difference": mean,
        "relative": mean / ref_mean if ref_mean and math.isfinite(ref_mean) else math.nan,
        "ci": [math.nan, math.nan],
        "p": math.nan,
    }
    # no spread beyond rounding (equal differences computed in floating point differ in the last bits)
    if n < 2 or statistics.stdev(diffs) <= 1e-12 * max(1.0, abs(mean)):
        return out
    se = statistics.stdev(diffs) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    out["ci"] = [mean - half, mean + half]
    out["p"] = float(2 * stats.t.sf(abs(mean / se), n - 1))
    return out


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error over the given tests); a NaN
    p-value stays NaN and does not count as a test."""
    finite = sorted((p, k) for k, p in pvalues.items() if math.isfinite(p))
    m = len(finite)
    out = {k: math.nan for k, p in pvalues.items() if not math.isfinite(p)}
    running = 0.0
    for i, (p, k) in enumerate(finite):
        running = max(running, min(1.0, (m - i) * p))  # monotone: never below an earlier one
        out[k] = running
    return out


def _correlations(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    from scipy import stats

    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan, math.nan
    return float(stats.spearmanr(x, y).statistic), float(stats.kendalltau(x, y).statistic)


def rank_agreement(
    proxy: Mapping[str, float],
    target: Mapping[str, float],
    *,
    draws: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Spearman's rho and Kendall's tau between the proxy's and the target's objective of the
    same mixtures, with percentile bootstrap intervals over the mixtures (draws with fewer than
    two distinct values on a side are skipped); NaN for fewer than 3 mixtures."""
    names = [k for k in proxy if k in target and math.isfinite(proxy[k]) and math.isfinite(target[k])]
    out: dict[str, Any] = {"n": len(names), "spearman": math.nan, "kendall": math.nan}
    out["spearman_ci"] = out["kendall_ci"] = [math.nan, math.nan]
    if len(names) < 3:
        return out
    x, y = [proxy[k] for k in names], [target[k] for k in names]
    out["spearman"], out["kendall"] = _correlations(x, y)
    rng = random.Random(seed)
    rhos, taus = [], []
    for _ in range(draws):
        idx = [rng.randrange(len(names)) for _ in names]
        r, t = _correlations([x[i] for i in idx], [y[i] for i in idx])
        if math.isfinite(r) and math.isfinite(t):
            rhos.append(r)
            taus.append(t)
    if rhos:
        lo, hi = (1 - level) / 2, (1 + level) / 2
        out["spearman_ci"] = [_quantile(rhos, lo), _quantile(rhos, hi)]
        out["kendall_ci"] = [_quantile(taus, lo), _quantile(taus, hi)]
    return out


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def compare_to_references(
    values: Mapping[str, Sequence[float]], references: Sequence[str], level: float = 0.95
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every mixture's per-seed ``values`` against each of ``references`` (``paired_comparison``),
    as ``{reference: {mixture: comparison}}``, each with ``p_holm``: Holm's correction over
    every comparison made here (one family)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for ref in references:
        out[ref] = {n: paired_comparison(v, values[ref], level) for n, v in values.items() if n != ref}
    adjusted = holm({f"{ref}\0{n}": c["p"] for ref, cs in out.items() for n, c in cs.items()})
    for ref, cs in out.items():
        for n, c in cs.items():
            c["p_holm"] = adjusted[f"{ref}\0{n}"]
    return out


def choose_champion(
    means: Mapping[str, float],
    *,
    current: str | None,
    retrained_alike: bool,
    best_vs_current: Mapping[str, Any] | None,
    alpha: float = 0.05,
) -> tuple[str | None, str]:
    """Which confirmed mixture takes the ``champion`` alias, and why: ``(name, reason)``, name
    None when the alias stays where it is. Without a champion, the best by mean takes it. With
    one (``current``: its name among ``means`` when this confirmation retrained it), a new
    best takes it only when the current one was retrained on the same seeds and target
    (``retrained_alike``) and the best beat it by the paired test (``best_vs_current``:
    ``paired_comparison(best, current)``, positive difference with p < ``alpha``)."""
    best = max(means, key=lambda n: means[n])
    if current is None:
        return best, f"{best} is the best confirmed strategy (there was no champion)"
    if not retrained_alike:
        return None, "the champion was not retrained on the same seeds and target here: it stays"
    if best == current:
        return None, "the champion, retrained, is still the best: it stays"
    assert best_vs_current is not None, "a comparison of the best with the retrained champion"
    p, diff = best_vs_current["p"], best_vs_current["mean_difference"]
    if math.isfinite(p) and p < alpha and diff > 0:
        return best, f"{best} beat the retrained champion by {diff:+.4f} (paired p = {p:.3g} < {alpha})"
    shown = f"{p:.3g}" if math.isfinite(p) else "nan"
    return None, f"{best} did not beat the retrained champion ({diff:+.4f}, paired p = {shown}): it stays"
