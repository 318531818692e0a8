"""Growth curves, transference and the tailored allocation: pure math on synthetic
curves with known parameters."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from allocator.curves.allocation import (
    doit_rule,
    maximize_separable,
    objective_terms,
    predicted_scores,
    tailored_allocation,
)
from allocator.curves.growth import describe, fit_curve, predict
from allocator.curves.transference import RunScores, complexity, rank_correlation, transference

GRID = np.repeat([0, 4, 16, 64, 256, 1024], 3).astype(float)  # the default grid, 3 seeds


def _noisy(f, sd=0.01, seed=0):
    return f(GRID) + np.random.default_rng(seed).normal(0, sd, GRID.size)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exp_curve_parameters_are_recovered(seed):
    y = _noisy(lambda v: 0.1 + 0.6 * (1 - np.exp(-v / 50)), seed=seed)
    c = fit_curve(GRID, y)
    assert c.model == "exp"
    assert c.params["y0"] == pytest.approx(0.1, abs=0.02)
    assert c.params["g"] == pytest.approx(0.6, abs=0.03)
    assert c.params["s"] == pytest.approx(50, rel=0.2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loglin_curve_is_chosen_and_recovered(seed):
    y = _noisy(lambda v: 0.02 + 0.05 * np.log2(1 + v), seed=seed)
    c = fit_curve(GRID, y)
    assert c.model == "loglin"
    assert c.params["k"] == pytest.approx(0.05, abs=0.003)
    assert not c.saturates and math.isinf(c.volume_reaching(0.9))


def test_power_law_curve_is_chosen_and_predicts_within_tolerance():
    def truth(v):
        return 0.6 * (1 - (1 + v / 10) ** -0.5)

    c = fit_curve(GRID, _noisy(truth, sd=0.005))
    assert c.model == "power"
    dense = np.geomspace(1, 1024, 50)
    # a power law's (s, alpha) trade off against each other; its predictions do not
    assert np.max(np.abs(c(dense) - truth(dense))) < 0.02


def test_exact_data_is_fitted_exactly_and_a_flat_score_picks_the_simplest_model():
    c = fit_curve(GRID, 0.3 + 0.5 * (1 - np.exp(-GRID / 20)))
    assert c.model == "exp" and c.rss < 1e-12
    assert c.params == pytest.approx({"y0": 0.3, "g": 0.5, "s": 20}, rel=1e-4)
    flat = fit_curve(GRID, np.zeros_like(GRID))
    assert flat.model == "loglin" and flat.params == pytest.approx({"y0": 0.0, "k": 0.0}, abs=1e-12)


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("exp", {"y0": 0.1, "g": 0.6, "s": 30.0}),
        ("power", {"y0": 0.0, "g": 0.5, "s": 5.0, "alpha": 0.7}),
        ("loglin", {"y0": 0.0, "k": 0.04}),
    ],
)
def test_volume_reaching_inverts_the_curve(model, params):
    c = fit_curve(GRID, predict(model, params, GRID), models=[model])
    gain = float(c(1024.0) - c(0.0))
    for frac in (0.1, 0.5, 0.9):
        v = c.volume_reaching(frac, gain)
        assert float(c(v) - c(0.0)) == pytest.approx(frac * gain, rel=1e-6)
    if c.saturates:
        v90 = c.volume_reaching(0.9)
        assert float(c(v90) - c(0.0)) == pytest.approx(0.9 * c.params["g"], rel=1e-6)


def test_describe_tells_saturated_growing_and_resistant_apart():
    sat, _ = describe(GRID, _noisy(lambda v: 0.7 * (1 - np.exp(-v / 8))), draws=50)
    grow, _ = describe(GRID, _noisy(lambda v: 0.05 * np.log2(1 + v)), draws=50)
    flat, _ = describe(GRID, _noisy(lambda v: 0.0 * v, sd=0.02), draws=50)
    assert (sat.verdict, grow.verdict, flat.verdict) == ("saturated", "growing", "resistant")
    assert sat.saturation_volume == pytest.approx(8 * math.log(10), rel=0.25)  # 90% of 1 - exp(-v/8)
    assert sat.sensitivity == pytest.approx(0.7 * (np.exp(-4 / 8) - np.exp(-8 / 8)), abs=0.05)  # steepest: 4 -> 8
    assert grow.sensitivity == pytest.approx(0.05, abs=0.005)  # a constant gain per doubling
    assert grow.gain == pytest.approx(0.5, abs=0.03) and grow.gain_ci[0] < grow.gain < grow.gain_ci[1]
    assert abs(flat.gain) < 0.05  # noise around 0


def test_bootstrap_interval_covers_the_truth_at_its_level():
    covered = 0
    for seed in range(20):
        g, _ = describe(GRID, _noisy(lambda v: 0.6 * (1 - np.exp(-v / 50)), sd=0.03, seed=seed), draws=100)
        truth = 0.6 * (1 - np.exp(-1024 / 50))
        covered += g.gain_ci[0] <= truth <= g.gain_ci[1]
    assert covered >= 14  # a 90% interval from 3 seeds per volume: generous, but not vacuous


def _runs(own_gain, transfer, abilities=("a", "b", "c"), volumes=(4, 16, 64)):
    """Isolated runs where training on b moves a by transfer[a][b] * own_gain[a](v)."""
    runs = [RunScores("base", None, 0, 0, {x: 0.1 for x in abilities})]
    for b in abilities:
        for v in volumes:
            for seed in range(2):
                scores = {a: 0.1 + (1.0 if a == b else transfer[a][b]) * own_gain[a](v) for a in abilities}
                runs.append(RunScores("isolated", b, v, seed, scores))
    return runs


def test_transference_recovers_known_relative_gains():
    own = {"a": lambda v: 0.1 * math.log2(1 + v), "b": lambda v: 0.3, "c": lambda v: 0.0}
    t_true = {"a": {"b": 0.5, "c": -0.25}, "b": {"a": 0.0, "c": 1.0}, "c": {"a": 2.0, "b": 2.0}}
    t, gains = transference(_runs(own, t_true), ["a", "b", "c"])
    assert t["a"] == pytest.approx({"a": 1.0, "b": 0.5, "c": -0.25})
    assert t["b"] == pytest.approx({"a": 0.0, "b": 1.0, "c": 1.0})
    assert all(math.isnan(x) for x in t["c"].values())  # c's own data does not move it
    assert gains["b"]["a"] == pytest.approx(0.0) and gains["b"]["b"] == pytest.approx(0.3)


def test_transference_needs_an_untrained_score():
    with pytest.raises(ValueError, match="volume 0"):
        transference([RunScores("isolated", "a", 4, 0, {"a": 0.2})], ["a"])


def test_complexity_and_rank_correlation():
    assert complexity(0.0, 1024) == 0.0
    assert complexity(1024.0, 1024) == 1.0
    assert complexity(31.0, 1023) == pytest.approx(0.5)
    assert complexity(math.inf, 1024) == 1.0
    r = rank_correlation({"a": 1, "b": 2, "c": 3, "d": 4}, {"a": 10, "b": 20, "c": 40, "d": 30})
    assert r["rho"] == pytest.approx(0.8) and r["n"] == 4
    assert math.isnan(rank_correlation({"a": 1, "b": 2}, {"a": 1, "b": 2})["rho"])


@settings(max_examples=60, deadline=None)
@example(([[0.0] * 8] * 2, 7, [(4, 3), (0, 7)]))  # one empty range, the sums fit
@given(
    st.integers(2, 4).flatmap(
        lambda n: st.tuples(
            st.lists(st.lists(st.floats(-1, 1), min_size=8, max_size=8), min_size=n, max_size=n),
            st.integers(0, 7),
            # lo may exceed hi: an empty range (a minimum past a maximum) has no allocation
            st.lists(st.tuples(st.integers(0, 5), st.integers(3, 7)), min_size=n, max_size=n),
        )
    )
)
def test_dynamic_program_matches_brute_force(case):
    values, total, bounds = case
    lo, hi = [b[0] for b in bounds], [b[1] for b in bounds]
    feasible = [ks for ks in itertools.product(*(range(lo_i, hi_i + 1) for lo_i, hi_i in bounds)) if sum(ks) == total]
    if not feasible:
        with pytest.raises(ValueError):
            maximize_separable([np.array(v) for v in values], total, lo, hi)
        return
    best = max(sum(v[k] for v, k in zip(values, ks, strict=True)) for ks in feasible)
    ks = maximize_separable([np.array(v) for v in values], total, lo, hi)
    assert sum(ks) == total and all(a <= k <= b for k, a, b in zip(ks, lo, hi, strict=True))
    assert sum(v[k] for v, k in zip(values, ks, strict=True)) == pytest.approx(best)


def _curve(model, **params):
    return lambda v: predict(model, params, v)


def test_tailored_allocation_is_the_brute_force_optimum_with_transference():
    curves = {
        "sat": _curve("exp", y0=0.0, g=0.8, s=5.0),
        "grow": _curve("loglin", y0=0.0, k=0.05),
        "slow": _curve("power", y0=0.0, g=0.6, s=40.0, alpha=0.8),
    }
    transfer = {"sat": {"grow": 0.5}, "grow": {"slow": -0.3}, "slow": {"sat": 0.2}}
    w = {"sat": 0.5, "grow": 0.3, "slow": 0.2}
    budget = 30
    got = tailored_allocation(curves, transfer, budget, weights=w, minimum={"slow": 2}, maximum={"sat": 12}, unit=1)

    def total(n):
        pred = predicted_scores(n, curves, transfer)
        return sum(w[a] * pred[a] for a in curves)

    feasible = [
        dict(zip(curves, ks, strict=True))
        for ks in itertools.product(range(13), range(budget + 1), range(2, budget + 1))
        if sum(ks) == budget
    ]
    best = max(feasible, key=total)
    assert sum(got.values()) == budget and got["slow"] >= 2 and got["sat"] <= 12
    assert total(got) == pytest.approx(total(best))


def test_objective_terms_sum_to_the_weighted_prediction():
    curves = {"a": _curve("exp", y0=0.1, g=0.5, s=10.0), "b": _curve("loglin", y0=0.2, k=0.03)}
    transfer = {"a": {"b": 0.4}, "b": {"a": -0.2}}
    w = {"a": 0.7, "b": 0.3}
    n = {"a": 13, "b": 40}
    pred = predicted_scores(n, curves, transfer)
    pred0 = predicted_scores({"a": 0, "b": 0}, curves, transfer)
    terms = {b: objective_terms(np.array([float(n[b])]), curves, transfer, w)[b][0] for b in curves}
    assert sum(terms.values()) == pytest.approx(sum(w[a] * (pred[a] - pred0[a]) for a in curves))


def test_tailored_allocation_leftover_and_uniform_for_identical_curves():
    curves = {a: _curve("exp", y0=0.0, g=0.5, s=100.0) for a in "abcd"}
    got = tailored_allocation(curves, None, 1003, unit=10)
    assert sum(got.values()) == 1003 and max(got.values()) - min(got.values()) <= 10


def test_doit_rule_cuts_saturated_abilities_and_feeds_growing_ones():
    verdicts = {"s": "saturated", "g1": "growing", "g2": "growing", "r": "resistant"}
    got = doit_rule(verdicts, {"s": 30.0, "g1": math.inf, "g2": math.inf, "r": math.inf}, 400)
    assert got == {"s": 30, "g1": 135, "g2": 135, "r": 100}
    capped = doit_rule(verdicts, {"s": 30.0, "g1": math.inf, "g2": math.inf, "r": math.inf}, 400, caps={"g1": 120})
    assert capped == {"s": 30, "g1": 120, "g2": 150, "r": 100}
    with pytest.raises(ValueError):
        doit_rule(verdicts, {"s": 30.0, "g1": 1, "g2": 1, "r": 1}, 400, caps=dict.fromkeys(verdicts, 50))


def test_a_ceiling_bounds_the_plateau_and_every_prediction():
    y = np.minimum(GRID / 1100, 1.0)  # near-linear up to 0.93: unbounded, an exp fit would pass 1 soon after
    free = fit_curve(GRID, y, models=["exp"])
    assert float(free(1e5)) > 1.5
    capped = fit_curve(GRID, y, ceiling=1.0)
    assert capped.params["ceiling"] == 1.0
    assert float(np.max(capped(np.geomspace(1, 1e6, 50)))) <= 1.0
    if capped.saturates:
        assert capped.params["y0"] + capped.params["g"] <= 1.0 + 1e-12
    # the bounded least squares is the best bounded fit: no feasible (y0, g) at the same shape does better
    c = fit_curve(GRID, y, models=["exp"], ceiling=1.0)
    x = 1 - np.exp(-GRID / c.params["s"])
    best = min(
        float(np.sum((y0 + g * x - y) ** 2))
        for y0 in np.linspace(-0.1, 0.1, 81)
        for g in np.linspace(0.5, 1.2, 141)
        if y0 + g <= 1.0
    )
    assert c.rss <= best + 1e-9


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=12))
def test_pareto_front_matches_brute_force(points):
    from allocator.curves.allocation import pareto_front

    pts = [(float(s), float(c)) for s, c in points]
    front = pareto_front(pts)

    def dominated(i):
        return any(pts[j][0] >= pts[i][0] and pts[j][1] <= pts[i][1] and pts[j] != pts[i] for j in range(len(pts)))

    expected = {pts[i] for i in range(len(pts)) if not dominated(i)}
    assert {pts[i] for i in front} == expected and len(front) == len(expected)  # one of equal points
    assert [pts[i][1] for i in front] == sorted(pts[i][1] for i in front)


def test_with_a_ceiling_transfer_cannot_predict_past_perfect_and_the_allocation_uses_that():
    # b and c each transfer fully to a, which saturates at 0.9 on its own: uncapped, a's
    # predicted score adds up to ~2.7, so the uncapped optimum spends on b and c "for a"
    from allocator.curves.allocation import predicted_scores, tailored_allocation

    def sat(g, s):
        return lambda v: g * (1.0 - np.exp(-np.asarray(v, dtype=float) / s))

    curves = {"a": sat(0.9, 10.0), "b": sat(0.3, 10.0), "c": sat(0.3, 10.0)}
    transfer = {"a": {"b": 1.0, "c": 1.0}}
    free = tailored_allocation(curves, transfer, 90, unit=1)
    capped = tailored_allocation(curves, transfer, 90, unit=1, ceiling=1.0)
    assert sum(capped.values()) == 90

    def value(n):
        pred = predicted_scores(n, curves, transfer, ceiling=1.0)
        return sum(pred.values()) / 3

    assert predicted_scores(free, curves, transfer)["a"] > 1.0  # the uncapped model's claim
    assert max(predicted_scores(capped, curves, transfer, ceiling=1.0).values()) <= 1.0
    assert value(capped) >= value(free)
    # brute force over the grid of 5s: the refinement reaches the capped optimum's neighbourhood
    best = max(({"a": x, "b": y, "c": 90 - x - y} for x in range(0, 91, 5) for y in range(0, 91 - x, 5)), key=value)
    assert value(capped) >= value(best) - 1e-3
