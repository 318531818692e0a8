"""The growth-curve model of the mixture landscape (allocator.curves.model), without Optuna:
its fit, its optimum and its explorations on synthetic landscapes with known curves."""

import numpy as np
import pytest

from allocator.curves.growth import predict
from allocator.curves.model import GrowthModel, Proposal

from ..helpers import BUDGET, GAIN, greedy_optimum, step_scores, true_objective, true_score

CAPS = {a: 600 for a in GAIN}


def test_its_optimum_of_the_true_curves_is_the_greedy_optimum_and_a_proposal_says_what_it_predicts():
    # the model fitted to exact points of the truth: its optimum is within a whisker of the
    # independent solver's, and a proposal records its prediction and the curves it used
    model = GrowthModel(BUDGET, CAPS, seed=0, draws=8, candidates=2)
    rng = np.random.default_rng(3)
    allocations = []
    for _ in range(10):
        allocations.append({a: float(round(BUDGET * w)) for a, w in zip(GAIN, rng.dirichlet([1.0] * 4), strict=True)})
    scores = [{a: true_score(a, x[a]) for a in GAIN} for x in allocations]
    counts = model.propose(allocations, scores)
    best = greedy_optimum(BUDGET, CAPS)
    assert counts is not None and sum(counts.values()) == BUDGET
    assert true_objective(counts) > 0.99 * true_objective(best)
    p = model.last_proposal
    assert isinstance(p, Proposal) and p.counts == counts and p.explore is None and set(p.curves) == set(GAIN)
    assert p.predicted == pytest.approx(model.predicted_objective(counts, p.curves)) and p.ucb >= p.predicted - 1e-12
    # what is taken is not proposed again: the next proposal moves at least min_distance of the budget
    again = model.propose(allocations, scores, taken=[counts])
    assert again is None or model.moved(again, counts) >= model.min_distance


def test_with_transference_the_bootstrap_refits_the_same_own_part_as_the_fit():
    # the prediction adds the transfer to each curve: draws refitted to the raw scores
    # (which hold the transfer already) would count it twice and rate every mixture too high
    transfer = {"b": {"a": 0.5, "d": 0.5}, "c": {"a": 1.0}}
    model = GrowthModel(BUDGET, CAPS, seed=0, draws=16, transfer=transfer)
    rng = np.random.default_rng(0)
    allocations, scores = [], []
    for _ in range(12):
        x = {a: float(round(BUDGET * w)) for a, w in zip(GAIN, rng.dirichlet([1.0] * len(GAIN)), strict=True)}
        moved = {a: sum(transfer.get(a, {}).get(b, 0.0) * true_score(a, x[b]) for b in GAIN if b != a) for a in GAIN}
        allocations.append(x)
        scores.append({a: min(1.0, true_score(a, x[a]) + moved[a]) for a in GAIN})
    curves, boot = model.fit(allocations, scores)
    c = model.optimum(curves)
    draws = [model.predicted_objective(c, b) for b in boot]
    assert float(np.mean(draws)) == pytest.approx(model.predicted_objective(c, curves), abs=0.01)


def test_no_curve_of_the_model_predicts_below_the_lowest_score_seen():
    # a score that falls at the largest share tempts a steep falling fit, which far past
    # the data would predict far below anything measured (and an sd of dozens)
    model = GrowthModel(BUDGET, CAPS, seed=0, draws=32)
    rng = np.random.default_rng(1)
    allocations, scores = [], []
    for _ in range(6):
        x = {a: float(round(BUDGET * w)) for a, w in zip(GAIN, rng.dirichlet([1.0] * len(GAIN)), strict=True)}
        allocations.append(x)
        scores.append({a: (0.3 if x[a] < max(x.values()) else 0.05) for a in GAIN})
    curves, boot = model.fit(allocations, scores)
    lowest = {a: min(0.0, *(s[a] for s in scores)) for a in GAIN}
    for c in [curves, *boot]:
        for a in GAIN:
            assert c[a].params["floor"] == lowest[a]
            assert float(np.min(c[a](np.array([0.0, 400.0, 800.0, 5000.0])))) >= lowest[a] - 1e-12
    # what the floor does to a curve that falls without bound
    assert float(predict("loglin", {"y0": 0.0, "k": -1.0, "floor": -0.5}, 1000.0)) == -0.5


def test_an_exploration_target_is_a_whole_step_within_an_odd_cap():
    # budget 1001 moves in steps of 2, and t's pool holds 777: doubling t's 500 examples
    # must stop at 776 (a whole step under the cap), not ask the optimum for 777
    caps = {"a": 1001, "b": 1001, "t": 777}
    model = GrowthModel(1001, caps, seed=0, draws=4)
    allocations = [{"a": 300, "b": 201, "t": 500}, {"a": 500, "b": 400, "t": 101}, {"a": 100, "b": 700, "t": 201}]
    scores = [{**step_scores({**x, "t": 0}), "t": 0.0} for x in allocations]
    counts = model.propose(allocations, scores, explore=True)
    assert counts is not None and model.last_proposal is not None and model.last_proposal.explore == ["t"]
    assert counts["t"] == 776 and sum(counts.values()) == 1001 and all(counts[a] <= caps[a] for a in counts)


def test_exploration_tests_several_abilities_at_once_then_takes_turns():
    # two flat abilities (t, u): while a and b need little of the budget, one trial doubles
    # both; where the budget cannot pay for both, the one explored least often goes first;
    # a running trial's volume counts as tried, so the doubling starts from it
    model = GrowthModel(BUDGET, {a: BUDGET for a in ("a", "b", "t", "u")}, seed=0, draws=4)
    allocations = [
        {"a": 300, "b": 300, "t": 100, "u": 100},
        {"a": 500, "b": 100, "t": 150, "u": 50},
        {"a": 100, "b": 500, "t": 50, "u": 150},
    ]
    scores = [{**step_scores({**x, "t": 0}), "u": 0.0} for x in allocations]
    both = model.propose(allocations, scores, explore=True)
    assert both is not None and sorted(model.last_proposal.explore) == ["t", "u"]
    assert both["t"] >= 400 and both["u"] >= 400  # twice 150 is less than twice the even share (400)
    # tried up to 300 each (a running trial): doubling both leaves nothing for a and b
    running = {"a": 100, "b": 100, "t": 300, "u": 300}
    for explored, first in (({"t": 1}, "u"), ({"u": 1}, "t")):
        one = model.propose(allocations, scores, taken=[running], explore=True, explored=explored)
        assert one is not None and model.last_proposal.explore == [first] and one[first] >= 600


def test_a_transfer_a_study_could_not_measure_counts_as_none():
    # a study's JSON holds None where an ability's own gain was too small to divide by: the
    # model must read it as no transfer (it raised a TypeError on the first proposal)
    transfer = {"b": {"a": None, "d": 0.5}, "c": {"a": None}}
    model = GrowthModel(BUDGET, CAPS, seed=0, draws=4, transfer=transfer)
    allocations = [{a: 200.0 for a in GAIN}, {"a": 500.0, "b": 100.0, "c": 100.0, "d": 100.0}]
    scores = [{a: true_score(a, x[a]) for a in GAIN} for x in allocations]
    curves, _ = model.fit(allocations, scores)
    no_a = GrowthModel(BUDGET, CAPS, seed=0, draws=4, transfer={"b": {"d": 0.5}, "c": {}})
    counts = model.optimum(curves)
    assert model.predicted_objective(counts, curves) == no_a.predicted_objective(
        counts, no_a.fit(allocations, scores)[0]
    )
