"""The growth-curve sampler: Optuna's sampler contract, what it finds on synthetic
landscapes with known optima, and a real Ray Tune search that feeds it."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator.growth import predict
from allocator.mixtures import counts_from_point, uniform_point
from allocator.sampler import (
    ALLOCATION_ATTR,
    PROPOSAL_ATTR,
    SCORES_ATTR,
    GrowthCurveSampler,
    point_from_counts,
    prior_from_study,
)
from allocator.search import make_sampler

from .conftest import ROOT

optuna.logging.set_verbosity(optuna.logging.WARNING)

# four abilities with known saturating curves: fast, slow, capped low, nearly linear
GAIN = {"a": 0.9, "b": 0.8, "c": 0.3, "d": 0.7}
SCALE = {"a": 30.0, "b": 300.0, "c": 50.0, "d": 2000.0}
BUDGET = 800
PLAN = {"unit": "examples", "budget": BUDGET, "caps": {a: 600 for a in GAIN}, "max_repeats": 1}


def true_score(a: str, n: float) -> float:
    return GAIN[a] * (1.0 - math.exp(-n / SCALE[a]))


def true_objective(counts) -> float:
    return sum(true_score(a, counts[a]) for a in GAIN) / len(GAIN)


class _TrueCurve:
    def __init__(self, a: str) -> None:
        self.a = a

    def __call__(self, v):
        return GAIN[self.a] * (1.0 - np.exp(-np.asarray(v, dtype=float) / SCALE[self.a]))


def _greedy_optimum(budget: int, caps: dict[str, int]) -> dict[str, int]:
    """The optimum by another method than the one under test: the curves are concave and
    separable, so handing out one example at a time to the largest marginal gain is exact."""
    counts = dict.fromkeys(GAIN, 0)
    for _ in range(budget):
        a = max(
            (a for a in GAIN if counts[a] < caps[a]),
            key=lambda a: true_score(a, counts[a] + 1) - true_score(a, counts[a]),
        )
        counts[a] += 1
    return counts


OPTIMUM = _greedy_optimum(BUDGET, PLAN["caps"])


def _objective(noise: float, seed: int):
    rng = np.random.default_rng(seed)

    def objective(trial: optuna.Trial) -> float:
        point = {a: trial.suggest_float(f"u_{a}", 0.0, 1.0) for a in GAIN}
        counts = counts_from_point(point, BUDGET, PLAN["caps"])
        scores = {a: true_score(a, counts[a]) + float(rng.normal(0.0, noise)) for a in GAIN}
        trial.set_user_attr(SCORES_ATTR, scores)
        trial.set_user_attr("true", true_objective(counts))
        return sum(scores.values()) / len(scores)

    return objective


def _search(sampler, trials: int, noise: float = 0.01, seed: int = 0) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({f"u_{a}": u for a, u in uniform_point(list(GAIN)).items()})
    study.optimize(_objective(noise, seed), n_trials=trials)
    return study


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 600), min_size=2, max_size=8).filter(lambda c: sum(c) > 0))
def test_point_from_counts_maps_back_to_the_same_counts(counts):
    named = {f"x{i}": n for i, n in enumerate(counts)}
    point = point_from_counts(named)
    assert all(0.0 <= u < 1.0 for u in point.values())
    assert counts_from_point(point, sum(counts), {a: 600 for a in named}) == named


def test_equal_counts_are_the_uniform_point():
    assert point_from_counts({"a": 5, "b": 5, "c": 5}) == pytest.approx(uniform_point(["a", "b", "c"]))


def test_it_comes_within_one_percent_of_a_known_optimum_in_ten_trials():
    best = true_objective(OPTIMUM)
    study = _search(GrowthCurveSampler(PLAN, seed=0, n_startup_trials=4), trials=10)
    found = max(study.trials, key=lambda t: t.value).user_attrs["true"]
    assert 100 * (best - found) / best < 1.0
    # the uniform mixture, the baseline every search starts from, is far from it
    assert true_objective(counts_from_point(uniform_point(list(GAIN)), BUDGET)) < 0.95 * best


def test_startup_trials_are_the_independent_samplers_then_the_model_proposes():
    sampler = GrowthCurveSampler(PLAN, seed=1, n_startup_trials=4, draws=8)
    study = _search(sampler, trials=7)
    assert sorted(sampler.proposals) == [4, 5, 6]  # trial numbers: 0 is the uniform, 1-3 random
    for number, p in sampler.proposals.items():
        t = study.trials[number]
        counts = counts_from_point({a: t.params[f"u_{a}"] for a in GAIN}, BUDGET, PLAN["caps"])
        # the trial trained on what the model rated, and the model's prediction is close to the truth
        assert abs(p["predicted"] - t.user_attrs["true"]) < 0.1
        assert sum(counts.values()) == BUDGET


def test_enqueued_trials_keep_their_point_and_get_no_prediction():
    sampler = GrowthCurveSampler(PLAN, seed=0, n_startup_trials=1, draws=4)
    study = _search(sampler, trials=2)
    fixed = point_from_counts({"a": 800, "b": 0, "c": 0, "d": 0})
    study.enqueue_trial({f"u_{a}": u for a, u in fixed.items()})
    study.optimize(_objective(0.0, 0), n_trials=1)
    assert 2 not in sampler.proposals and study.trials[2].params == {f"u_{a}": u for a, u in fixed.items()}
    assert sorted(sampler.proposals) == [1]


def test_define_by_run_parameters_outside_the_mixture_go_to_the_independent_sampler():
    sampler = GrowthCurveSampler(PLAN, seed=0, n_startup_trials=2, draws=4)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    inner = _objective(0.0, 0)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        kind = trial.suggest_categorical("kind", ["lora", "full"]) if trial.number % 2 else "lora"
        assert 1e-4 <= lr <= 1e-1 and kind in ("lora", "full")
        return inner(trial)

    study.optimize(objective, n_trials=6)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert min(sampler.proposals) == 2  # the model from the third trial on
    assert {"lr", "u_a"} <= set(study.trials[-1].params)


def test_same_seed_same_proposals_and_reseed_changes_the_random_stream():
    def params(sampler):
        return [t.params for t in _search(sampler, trials=6, noise=0.0).trials]

    a = params(GrowthCurveSampler(PLAN, seed=3, n_startup_trials=3, draws=4))
    assert a == params(GrowthCurveSampler(PLAN, seed=3, n_startup_trials=3, draws=4))
    reseeded = GrowthCurveSampler(PLAN, seed=3, n_startup_trials=3, draws=4)
    reseeded.reseed_rng()
    assert params(reseeded)[1:3] != a[1:3]  # the random startup trials (0 is the enqueued uniform)


def test_it_refuses_minimizing_and_multi_objective_studies():
    for kwargs in ({"direction": "minimize"}, {"directions": ["maximize", "minimize"]}):
        study = optuna.create_study(sampler=GrowthCurveSampler(PLAN, n_startup_trials=1), **kwargs)
        with pytest.raises(ValueError):
            study.ask().suggest_float("u_a", 0.0, 1.0)  # Optuna samples relative params lazily


def test_scores_and_allocations_survive_an_rdb_storage_and_a_new_sampler_reads_them(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(
        study_name="s", storage=storage, direction="maximize", sampler=GrowthCurveSampler(PLAN, seed=0)
    )
    study.optimize(_objective(0.0, 0), n_trials=4)
    resumed = optuna.load_study(study_name="s", storage=storage, sampler=GrowthCurveSampler(PLAN, seed=1, draws=4))
    trial = resumed.ask()
    trial.suggest_float("u_a", 0.0, 1.0)  # 4 scored trials in the storage: the model proposes at once
    assert list(resumed.sampler.proposals) == [trial.number] == [4]


def test_a_reported_allocation_is_what_the_model_fits():
    # the trial says it trained on a different mixture than its parameters name (e.g. a
    # replay that looks up the nearest measured one): the model must fit that one
    sampler = GrowthCurveSampler(PLAN, seed=0, n_startup_trials=1, draws=4)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    trial = study.ask({f"u_{a}": optuna.distributions.FloatDistribution(0, 1) for a in GAIN})
    trained = {"a": 800, "b": 0, "c": 0, "d": 0}
    trial.set_user_attr(ALLOCATION_ATTR, trained)
    trial.set_user_attr(SCORES_ATTR, {a: true_score(a, n) for a, n in trained.items()})
    study.tell(trial, true_objective(trained))
    seen = sampler._allocation(study.trials[0])
    assert seen == {a: float(n) for a, n in trained.items()}


def test_a_pruned_or_failed_proposal_is_not_proposed_again():
    # the model learns nothing from a pruned or failed trial: unless such trials count as
    # taken, it proposes the same optimum again (and the same seed prunes it again)
    # no bootstrap candidates: the model's one candidate is its optimum, the same while no data comes
    sampler = GrowthCurveSampler(PLAN, seed=0, n_startup_trials=3, draws=4, candidates=0)
    study = _search(sampler, trials=3, noise=0.0)
    scored = _objective(0.0, 0)

    def stopped(trial: optuna.Trial) -> float:
        scored(trial)
        if trial.number % 2:
            raise optuna.TrialPruned()
        raise RuntimeError("out of memory")

    study.optimize(stopped, n_trials=4, catch=(RuntimeError,))
    states = [t.state for t in study.trials[3:]]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL] * 2
    mixtures = [
        counts_from_point({a: t.params[f"u_{a}"] for a in GAIN}, BUDGET, PLAN["caps"]) for t in study.trials[3:]
    ]
    assert sorted(sampler.proposals) == [3]  # then that optimum is taken: the random sampler explores
    assert all(sampler._moved(x, y) >= 0.02 for i, x in enumerate(mixtures) for y in mixtures[:i])


def test_with_transference_the_bootstrap_refits_the_same_own_part_as_the_fit():
    # the prediction adds the transfer to each curve: draws refitted to the raw scores
    # (which hold the transfer already) would count it twice and rate every mixture too high
    transfer = {"b": {"a": 0.5, "d": 0.5}, "c": {"a": 1.0}}
    sampler = GrowthCurveSampler(PLAN, seed=0, draws=16, transfer=transfer)
    rng = np.random.default_rng(0)
    allocations, scores = [], []
    for _ in range(12):
        x = {a: float(round(BUDGET * w)) for a, w in zip(GAIN, rng.dirichlet([1.0] * len(GAIN)), strict=True)}
        moved = {a: sum(transfer.get(a, {}).get(b, 0.0) * true_score(a, x[b]) for b in GAIN if b != a) for a in GAIN}
        allocations.append(x)
        scores.append({a: min(1.0, true_score(a, x[a]) + moved[a]) for a in GAIN})
    curves, boot = sampler.fit(allocations, scores)
    c = sampler.optimum(curves)
    draws = [sampler.predicted_objective(c, b) for b in boot]
    assert float(np.mean(draws)) == pytest.approx(sampler.predicted_objective(c, curves), abs=0.01)


def test_no_curve_of_the_model_predicts_below_the_lowest_score_seen():
    # a score that falls at the largest share tempts a steep falling fit, which far past
    # the data would predict far below anything measured (and an sd of dozens)
    sampler = GrowthCurveSampler(PLAN, seed=0, draws=32)
    rng = np.random.default_rng(1)
    allocations, scores = [], []
    for _ in range(6):
        x = {a: float(round(BUDGET * w)) for a, w in zip(GAIN, rng.dirichlet([1.0] * len(GAIN)), strict=True)}
        allocations.append(x)
        scores.append({a: (0.3 if x[a] < max(x.values()) else 0.05) for a in GAIN})
    curves, boot = sampler.fit(allocations, scores)
    lowest = {a: min(0.0, *(s[a] for s in scores)) for a in GAIN}
    for c in [curves, *boot]:
        for a in GAIN:
            assert c[a].params["floor"] == lowest[a]
            assert float(np.min(c[a](np.array([0.0, 400.0, 800.0, 5000.0])))) >= lowest[a] - 1e-12
    # what the floor does to a curve that falls without bound
    assert float(predict("loglin", {"y0": 0.0, "k": -1.0, "floor": -0.5}, 1000.0)) == -0.5


# a threshold landscape: two abilities that saturate early, and one (t) that scores
# nothing below 400 examples and nearly everything from there (what a tiny proxy does
# with copying); no startup trial gives t more than 200
STEP = {"a": 30.0, "b": 60.0}
STARTS = [{"a": 300, "b": 300, "t": 200}, {"a": 600, "b": 100, "t": 100}, {"a": 100, "b": 600, "t": 100}]


def _step_scores(counts) -> dict[str, float]:
    scores = {a: 0.95 * (1.0 - math.exp(-counts[a] / s)) for a, s in STEP.items()}
    return {**scores, "t": 0.9 if counts["t"] >= 400 else 0.0}


THRESHOLD_PLAN = {"unit": "examples", "budget": BUDGET, "caps": {"a": 800, "b": 800, "t": 800}, "max_repeats": 1}


def _threshold_objective(trial: optuna.Trial) -> float:
    point = {a: trial.suggest_float(f"u_{a}", 0.0, 1.0) for a in ("a", "b", "t")}
    counts = counts_from_point(point, BUDGET, THRESHOLD_PLAN["caps"])
    scores = _step_scores(counts)
    trial.set_user_attr(SCORES_ATTR, scores)
    trial.set_user_attr(ALLOCATION_ATTR, counts)
    return sum(scores.values()) / 3


class _Recording(GrowthCurveSampler):
    """Records whether each model proposal was asked to explore."""

    asked: list[bool]

    def propose(self, *args, explore: bool = False, **kwargs):
        self.asked = [*getattr(self, "asked", []), explore]
        return super().propose(*args, explore=explore, **kwargs)


def _threshold_search(explore_every: int, storage: str | None = None) -> tuple[GrowthCurveSampler, optuna.Study]:
    sampler = GrowthCurveSampler(THRESHOLD_PLAN, seed=0, n_startup_trials=3, draws=8, explore_every=explore_every)
    study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage, study_name="t")
    for counts in STARTS:
        study.enqueue_trial({f"u_{a}": u for a, u in point_from_counts(counts).items()})
    study.optimize(_threshold_objective, n_trials=9)
    return sampler, study


def test_it_explores_an_untried_volume_range_where_the_upper_bound_never_goes(tmp_path):
    # t's curve is flat at 0 over every volume tried, with no bootstrap spread: the upper
    # bound alone never gives it more, and the search never finds that t can be learned
    # (until the random sampler, proposing where every model candidate is taken, stumbles on it)
    plain, study = _threshold_search(explore_every=0)
    t_counts = [t.user_attrs[ALLOCATION_ATTR]["t"] for t in study.trials]
    assert plain.proposals and all(p["explore"] is None for p in plain.proposals.values())
    assert all(t_counts[n] < 400 for n in plain.proposals if max(t_counts[:n]) < 400)
    # every third model proposal doubles the largest tried volume of one ability (here t,
    # whose optimistic gain most exceeds the cost of forcing it there)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    sampler, study = _threshold_search(explore_every=3, storage=storage)
    kinds = {t.number: t.system_attrs.get(PROPOSAL_ATTR) for t in study.trials}
    assert [kinds[n] for n in range(3)] == [None] * 3  # the enqueued startup points
    assert kinds[5] == ["t"] and sampler.proposals[5]["explore"] == ["t"]
    assert [kinds[n] for n in (3, 4)] == ["model", "model"]
    assert study.trials[5].user_attrs[ALLOCATION_ATTR]["t"] >= 400  # twice 200, the largest tried
    best = max(study.trials, key=lambda t: t.value)
    assert best.user_attrs[ALLOCATION_ATTR]["t"] >= 400 and best.value > 0.9
    assert best.value > max(t.value for t in optuna.load_study(study_name="t", storage=storage).trials[:5])
    # the cycle is counted from the storage: a new sampler on the same study goes on with it
    # (4 model proposals so far: the 5th exploits, the 6th is asked to explore)
    assert sum(1 for t in study.trials if PROPOSAL_ATTR in t.system_attrs) == len(sampler.proposals) == 4
    resumed = _Recording(THRESHOLD_PLAN, seed=1, draws=4)
    optuna.load_study(study_name="t", storage=storage, sampler=resumed).optimize(_threshold_objective, n_trials=2)
    assert resumed.asked == [False, True]
    with pytest.raises(ValueError, match="explore_every"):
        GrowthCurveSampler(PLAN, explore_every=-1)


def test_an_exploration_target_is_a_whole_step_within_an_odd_cap():
    # budget 1001 moves in steps of 2, and t's pool holds 777: doubling t's 500 examples
    # must stop at 776 (a whole step under the cap), not ask the optimum for 777
    plan = {"unit": "examples", "budget": 1001, "caps": {"a": 1001, "b": 1001, "t": 777}}
    sampler = GrowthCurveSampler(plan, seed=0, draws=4, explore_every=1)
    allocations = [{"a": 300, "b": 201, "t": 500}, {"a": 500, "b": 400, "t": 101}, {"a": 100, "b": 700, "t": 201}]
    scores = [{**_step_scores({**x, "t": 0}), "t": 0.0} for x in allocations]
    counts = sampler.propose(allocations, scores, explore=True)
    assert counts is not None and sampler.last_proposal is not None and sampler.last_proposal["explore"] == ["t"]
    assert counts["t"] == 776 and sum(counts.values()) == 1001 and all(counts[a] <= plan["caps"][a] for a in counts)


def test_exploration_tests_several_abilities_at_once_then_takes_turns():
    # two flat abilities (t, u): while a and b need little of the budget, one trial doubles
    # both; where the budget cannot pay for both, the one explored least often goes first;
    # a running trial's volume counts as tried, so the doubling starts from it
    plan = {"unit": "examples", "budget": BUDGET, "caps": {a: BUDGET for a in ("a", "b", "t", "u")}}
    sampler = GrowthCurveSampler(plan, seed=0, draws=4, explore_every=1)
    allocations = [
        {"a": 300, "b": 300, "t": 100, "u": 100},
        {"a": 500, "b": 100, "t": 150, "u": 50},
        {"a": 100, "b": 500, "t": 50, "u": 150},
    ]
    scores = [{**_step_scores({**x, "t": 0}), "u": 0.0} for x in allocations]
    both = sampler.propose(allocations, scores, explore=True)
    assert both is not None and sorted(sampler.last_proposal["explore"]) == ["t", "u"]
    assert both["t"] >= 400 and both["u"] >= 400  # twice 150 is less than twice the even share (400)
    # tried up to 300 each (a running trial): doubling both leaves nothing for a and b
    running = {"a": 100, "b": 100, "t": 300, "u": 300}
    for explored, first in (({"t": 1}, "u"), ({"u": 1}, "t")):
        one = sampler.propose(allocations, scores, taken=[running], explore=True, explored=explored)
        assert one is not None and sampler.last_proposal["explore"] == [first] and one[first] >= 600


def test_a_prior_study_lets_the_model_start_after_the_uniform_trial():
    runs = [{"mixture": {a: 0 for a in GAIN}, "scores": {a: 0.0 for a in GAIN}}]
    for v in (16, 64, 256):
        for b in GAIN:
            mix = {a: (v if a == b else 0) for a in GAIN}
            runs.append({"mixture": mix, "scores": {a: true_score(a, mix[a]) for a in GAIN}})
    prior = prior_from_study({"abilities": list(GAIN), "runs": runs})
    assert prior["a"][0] == (0.0, 0.0) and len(prior["a"]) == 4  # the base, then a's own runs
    sampler = GrowthCurveSampler(PLAN, seed=0, prior=prior, draws=8)
    study = _search(sampler, trials=2)
    assert list(sampler.proposals) == [1]
    found = study.trials[1].user_attrs["true"]
    assert 100 * (true_objective(OPTIMUM) - found) / true_objective(OPTIMUM) < 2.0


def test_with_a_transference_matrix_it_still_proposes_whole_budgets_within_the_ceiling():
    transfer = {"b": {"a": 0.5, "d": 0.5}, "c": {"a": 1.0}}  # b and c also learn from others' data
    sampler = GrowthCurveSampler(PLAN, seed=0, n_startup_trials=2, draws=4, transfer=transfer)
    study = _search(sampler, trials=4)
    assert sorted(sampler.proposals) == [2, 3]
    for number, p in sampler.proposals.items():
        assert p["predicted"] <= 1.0
        counts = counts_from_point({a: study.trials[number].params[f"u_{a}"] for a in GAIN}, BUDGET, PLAN["caps"])
        assert sum(counts.values()) == BUDGET


def test_bounds_hold_in_every_proposal():
    sampler = GrowthCurveSampler(PLAN, seed=0, n_startup_trials=2, draws=4, minimum={"c": 100}, maximum={"a": 50})
    study = _search(sampler, trials=5)
    for number in sampler.proposals:
        t = study.trials[number]
        counts = counts_from_point({a: t.params[f"u_{a}"] for a in GAIN}, BUDGET, PLAN["caps"])
        assert counts["c"] >= 100 and counts["a"] <= 50
    with pytest.raises(ValueError, match="cannot hold"):
        GrowthCurveSampler(PLAN, minimum={a: 300 for a in GAIN})


@pytest.mark.parametrize("name", ["tpe", "random", "gp", "cmaes", "growth"])
def test_every_configured_sampler_runs_a_search(name):
    sampler = make_sampler({"sampler": name, "n_startup_trials": 2, "kappa": 1.0}, 0, PLAN, {a: 1.0 for a in GAIN})
    study = _search(sampler, trials=4)
    assert len(study.trials) == 4 and all(t.value is not None for t in study.trials)


def test_the_regret_replay_reads_the_table_and_the_growth_sampler_beats_random_on_it():
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import bench_regret
        import landscape
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    caps = PLAN["caps"]
    mixes = landscape.mixtures(list(GAIN), caps, BUDGET, 40, seed=0)
    assert len(mixes) == 40 and "uniform" in mixes and all(sum(m.values()) == BUDGET for m in mixes.values())
    rows = []
    for name, mix in mixes.items():
        per_seed = {a: [true_score(a, mix[a]) + float(rng.normal(0, 0.01)) for _ in range(2)] for a in GAIN}
        rows.append(
            {
                "name": name,
                "mixture": mix,
                "objective": float(np.mean([np.mean(v) for v in per_seed.values()])),
                "objective_per_seed": [float(np.mean([v[k] for v in per_seed.values()])) for k in range(2)],
                "scores": {a: float(np.mean(v)) for a, v in per_seed.items()},
                "scores_per_seed": per_seed,
            }
        )
    weights = {a: 1.0 for a in GAIN}
    table = {"abilities": list(GAIN), "budget": BUDGET, "caps": caps, "weights": weights, "mixtures": rows}
    table = json.loads(json.dumps(table))  # as read from the results file
    # nearest lookup: every value is a table value, the first is the uniform mixture's
    values = bench_regret.replay(table, "random", 0, 6)
    measured = {r["objective"] for r in rows}
    assert all(v in measured for v in values) and values[0] == rows[0]["objective"]
    r = bench_regret.regrets(values, max(measured))
    assert r == sorted(r, reverse=True) and min(r) >= 0.0
    # surrogate lookup: the fitted GPs recover the synthetic truth near the optimum
    sur = bench_regret.Surrogate(table)
    oracle, at = bench_regret.surrogate_oracle(sur, table)
    assert oracle == pytest.approx(true_objective(OPTIMUM), abs=0.02)
    assert true_objective(at) > 0.98 * true_objective(OPTIMUM)
    growth = bench_regret.regrets(bench_regret.replay(table, "growth", 0, 10, surrogate=sur), oracle)
    rand = bench_regret.regrets(bench_regret.replay(table, "random", 0, 10, surrogate=sur), oracle)
    assert growth[-1] < 1.5 and growth[-1] < rand[-1]


def _synthetic_trial(config: dict) -> None:
    """A Tune trainable that reports like allocator's proxy trial (two evaluations, the
    first at half the steps and half the score) on the synthetic truth."""
    from ray import tune

    counts = counts_from_point({a: config[f"u_{a}"] for a in GAIN}, BUDGET, PLAN["caps"])
    scores = {a: true_score(a, counts[a]) for a in GAIN}
    for step, part in ((5, 0.5), (10, 1.0)):
        metrics = {f"score/{a}": part * s for a, s in scores.items()}
        metrics.update({f"loss/{a}": 1.0 - part * s for a, s in scores.items()})
        objective = part * sum(scores.values()) / len(scores)
        tune.report({"step": step, "steps_total": 10, "objective": objective, **metrics})


def test_a_real_ray_tune_search_feeds_the_sampler_and_asha_stops_a_bad_trial(tmp_path, ray_session):
    from mlflow import MlflowClient
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from allocator.search import _ScoredOptunaSearch, _TrialLog, compute_stats
    from allocator.tracking import Tracker
    from ray_cluster import connect, disconnect

    sampler = GrowthCurveSampler(PLAN, seed=0, n_startup_trials=2, draws=8)
    bad = point_from_counts({"a": 0, "b": 0, "c": BUDGET, "d": 0})  # all on the ability capped at 0.3
    first = {"uniform-baseline": uniform_point(list(GAIN)), "warm-bad": bad}
    searcher = _ScoredOptunaSearch(
        list(GAIN),
        2,
        metric="objective",
        mode="max",
        sampler=sampler,
        points_to_evaluate=[{f"u_{a}": u for a, u in p.items()} for p in first.values()],
    )
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "asha")
    tracker.start_parent("asha", {}, {})
    origin = {"sampler": "growth", "first": first, "proposal": searcher.proposal}
    log = _TrialLog(tracker, list(GAIN), PLAN, lambda m: "0" * 64, 5, lambda _: None, origin, reports=2)
    asha = ASHAScheduler(metric="objective", mode="max", time_attr="training_iteration", max_t=2, grace_period=1)
    started = connect(None, 2)
    try:
        tuner = tune.Tuner(
            _synthetic_trial,
            param_space={f"u_{a}": tune.uniform(0.0, 1.0) for a in GAIN},
            # one at a time: which trial ASHA stops is then deterministic
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=asha, num_samples=6, max_concurrent_trials=1),
            run_config=tune.RunConfig(name="growth", storage_path=str(tmp_path), callbacks=[log], verbose=0),
        )
        results = tuner.fit()
    finally:
        disconnect(started)
    assert not results.errors and len(results) == 6
    records = {r.name: r for r in log.records.values()}
    # the bad mixture is below the uniform one at the first evaluation: stopped there
    assert records["trial-001"].origin == "warm start: bad"
    assert records["trial-001"].status == "EARLY_STOPPED" and records["trial-001"].steps == 5
    assert records["uniform-baseline"].status == "FINISHED" and records["uniform-baseline"].steps == 10
    stats = compute_stats(list(log.records.values()))
    assert stats["early_stopped"] >= 1 and stats["steps_without_early_stopping"] == 60
    assert stats["compute_saved"] == pytest.approx(1 - stats["steps_trained"] / 60)
    run = MlflowClient(tracker.uri).get_run(records["trial-001"].mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["allocator.early_stopped"] == "true"
    # Optuna: the stopped trial is PRUNED (a partial score is no point of the landscape);
    # every completed one carries its per-ability scores
    ot = {t.number: t for t in searcher._ot_study.trials}
    assert ot[1].state == optuna.trial.TrialState.PRUNED and SCORES_ATTR not in ot[1].user_attrs
    complete = [t for t in ot.values() if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(set(t.user_attrs[SCORES_ATTR]) == set(GAIN) for t in complete)
    # from 2 completed trials on, the model proposes; its proposals beat the uniform mixture
    proposed = [r for r in records.values() if r.origin.startswith("growth model: predicted")]
    assert proposed and all(isinstance(r.predicted, float) for r in proposed)
    uniform = true_objective(counts_from_point(uniform_point(list(GAIN)), BUDGET))
    assert max(r.objective for r in proposed if r.status == "FINISHED") > uniform


def test_a_transfer_a_study_could_not_measure_counts_as_none():
    # a study's JSON holds None where an ability's own gain was too small to divide by: the
    # model must read it as no transfer (it raised a TypeError on the first proposal)
    transfer = {"b": {"a": None, "d": 0.5}, "c": {"a": None}}
    sampler = GrowthCurveSampler(PLAN, seed=0, draws=4, transfer=transfer)
    allocations = [{a: 200.0 for a in GAIN}, {"a": 500.0, "b": 100.0, "c": 100.0, "d": 100.0}]
    scores = [{a: true_score(a, x[a]) for a in GAIN} for x in allocations]
    curves, _ = sampler.fit(allocations, scores)
    no_a = GrowthCurveSampler(PLAN, seed=0, draws=4, transfer={"b": {"d": 0.5}, "c": {}})
    counts = sampler.optimum(curves)
    assert sampler.predicted_objective(counts, curves) == no_a.predicted_objective(
        counts, no_a.fit(allocations, scores)[0]
    )
