"""The growth-curve sampler: Optuna's sampler contract, what it finds on synthetic
landscapes with known optima, and a real Ray Tune search that feeds it."""

from __future__ import annotations

import json
import sys

import numpy as np
import optuna
import pytest

from allocator.mixture import BudgetPlan, counts_from_point, point_from_counts, uniform_point
from allocator.search.sampler import ALLOCATION_ATTR, PROPOSAL_ATTR, SCORES_ATTR, GrowthCurveSampler
from allocator.studies.analysis import prior_from_study

from ..helpers import (
    BUDGET,
    CAPS,
    GAIN,
    ROOT,
    greedy_optimum,
    scored_search,
    step_scores,
    synthetic_tune_trial,
    true_objective,
    true_score,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

PLAN = BudgetPlan("examples", BUDGET, CAPS)
OPTIMUM = greedy_optimum(BUDGET, PLAN.caps)


def _objective(noise: float, seed: int):
    rng = np.random.default_rng(seed)

    def objective(trial: optuna.Trial) -> float:
        point = {a: trial.suggest_float(f"u_{a}", 0.0, 1.0) for a in GAIN}
        counts = counts_from_point(point, BUDGET, PLAN.caps)
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
        counts = counts_from_point({a: t.params[f"u_{a}"] for a in GAIN}, BUDGET, PLAN.caps)
        # the trial trained on what the model rated, and the model's prediction is close to the truth
        assert abs(p.predicted - t.user_attrs["true"]) < 0.1
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
    seen = sampler.allocation(study.trials[0])
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
    mixtures = [counts_from_point({a: t.params[f"u_{a}"] for a in GAIN}, BUDGET, PLAN.caps) for t in study.trials[3:]]
    assert sorted(sampler.proposals) == [3]  # then that optimum is taken: the random sampler explores
    assert all(sampler.model.moved(x, y) >= 0.02 for i, x in enumerate(mixtures) for y in mixtures[:i])


# no startup trial gives the threshold ability t more than 200 (helpers.step_scores)
STARTS = [{"a": 300, "b": 300, "t": 200}, {"a": 600, "b": 100, "t": 100}, {"a": 100, "b": 600, "t": 100}]
THRESHOLD_PLAN = BudgetPlan("examples", BUDGET, {"a": 800, "b": 800, "t": 800})


def _threshold_objective(trial: optuna.Trial) -> float:
    point = {a: trial.suggest_float(f"u_{a}", 0.0, 1.0) for a in ("a", "b", "t")}
    counts = counts_from_point(point, BUDGET, THRESHOLD_PLAN.caps)
    scores = step_scores(counts)
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
    assert plain.proposals and all(p.explore is None for p in plain.proposals.values())
    assert all(t_counts[n] < 400 for n in plain.proposals if max(t_counts[:n]) < 400)
    # every third model proposal doubles the largest tried volume of one ability (here t,
    # whose optimistic gain most exceeds the cost of forcing it there)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    sampler, study = _threshold_search(explore_every=3, storage=storage)
    kinds = {t.number: t.system_attrs.get(PROPOSAL_ATTR) for t in study.trials}
    assert [kinds[n] for n in range(3)] == [None] * 3  # the enqueued startup points
    assert kinds[5] == ["t"] and sampler.proposals[5].explore == ["t"]
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
        assert p.predicted <= 1.0
        counts = counts_from_point({a: study.trials[number].params[f"u_{a}"] for a in GAIN}, BUDGET, PLAN.caps)
        assert sum(counts.values()) == BUDGET


def test_bounds_hold_in_every_proposal():
    sampler = GrowthCurveSampler(PLAN, seed=0, n_startup_trials=2, draws=4, minimum={"c": 100}, maximum={"a": 50})
    study = _search(sampler, trials=5)
    for number in sampler.proposals:
        t = study.trials[number]
        counts = counts_from_point({a: t.params[f"u_{a}"] for a in GAIN}, BUDGET, PLAN.caps)
        assert counts["c"] >= 100 and counts["a"] <= 50
    with pytest.raises(ValueError, match="cannot hold"):
        GrowthCurveSampler(PLAN, minimum={a: 300 for a in GAIN})


def test_the_regret_replay_reads_the_table_and_the_growth_sampler_beats_random_on_it():
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import bench_regret
        import landscape
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    caps = PLAN.caps
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


def test_a_real_ray_tune_search_feeds_the_sampler_and_asha_stops_a_bad_trial(tmp_path, ray_session):
    from mlflow import MlflowClient
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from allocator.report.tracking import Tracker
    from allocator.search.optimize import SearchOpener
    from allocator.search.selection import compute_stats
    from allocator.trial.callback import TrialLog

    sampler = GrowthCurveSampler(PLAN, seed=0, n_startup_trials=2, draws=8)
    bad = point_from_counts({"a": 0, "b": 0, "c": BUDGET, "d": 0})  # all on the ability capped at 0.3
    first = {"uniform-baseline": uniform_point(list(GAIN)), "warm-bad": bad}
    searcher = scored_search(sampler, list(first.values()))
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "asha")
    tracker.start_parent("asha", {}, {})
    opener = SearchOpener(list(GAIN), PLAN, "growth", first, searcher)
    log = TrialLog(
        tracker,
        list(GAIN),
        lambda m: "0" * 64,
        opener,
        lambda rec, ended: rec.name,
        lambda _: None,
        reports=lambda rec: 2,
    )
    asha = ASHAScheduler(metric="objective", mode="max", time_attr="training_iteration", max_t=2, grace_period=1)
    tuner = tune.Tuner(
        synthetic_tune_trial,
        param_space={f"u_{a}": tune.uniform(0.0, 1.0) for a in GAIN},
        # one at a time: which trial ASHA stops is then deterministic
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=asha, num_samples=6, max_concurrent_trials=1),
        run_config=tune.RunConfig(name="growth", storage_path=str(tmp_path), callbacks=[log], verbose=0),
    )
    results = tuner.fit()
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
    ot = {t.number: t for t in searcher.optuna_study.trials}
    assert ot[1].state == optuna.trial.TrialState.PRUNED and SCORES_ATTR not in ot[1].user_attrs
    complete = [t for t in ot.values() if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(set(t.user_attrs[SCORES_ATTR]) == set(GAIN) for t in complete)
    # from 2 completed trials on, the model proposes; its proposals beat the uniform mixture
    proposed = [r for r in records.values() if r.origin.startswith("growth model: predicted")]
    assert proposed and all(isinstance(r.predicted, float) for r in proposed)
    uniform = true_objective(counts_from_point(uniform_point(list(GAIN)), BUDGET))
    assert max(r.objective for r in proposed if r.status == "FINISHED") > uniform
