"""Sampler conformance: every sampler a search offers (``search.sampler``) is the sampler its
name says, samples define-by-run parameters and the mixture space's relative ones, reseeds,
and runs inside a real Ray Tune search the way a search drives it."""

from __future__ import annotations

import typing

import optuna
import pytest

from allocator.config import SearchConfig
from allocator.mixture import BudgetPlan, counts_from_point, uniform_point
from allocator.search.sampler import SCORES_ATTR, GrowthCurveSampler
from allocator.search.samplers import SAMPLERS, make_sampler

from ..helpers import BUDGET, CAPS, GAIN, scored_search, synthetic_tune_trial, true_score

optuna.logging.set_verbosity(optuna.logging.WARNING)

PLAN = BudgetPlan("examples", BUDGET, CAPS)
KINDS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "growth": GrowthCurveSampler,
}


def _sampler(name: str, seed: int = 0):
    return make_sampler(SearchConfig(sampler=name, n_startup_trials=2), seed, PLAN, {a: 1.0 for a in GAIN})


def test_the_config_offers_exactly_the_samplers_there_are_and_an_unknown_name_is_refused():
    offered = typing.get_args(SearchConfig.model_fields["sampler"].annotation)
    assert set(offered) == set(SAMPLERS) == set(KINDS)
    with pytest.raises(ValueError, match="unknown sampler 'annealing'"):
        make_sampler(SearchConfig.model_construct(sampler="annealing", n_startup_trials=2), 0, PLAN, {})


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_name_gives_its_sampler_not_a_fallback(name):
    assert type(_sampler(name)) is KINDS[name]


def _objective(trial: optuna.Trial) -> float:
    point = {a: trial.suggest_float(f"u_{a}", 0.0, 1.0) for a in GAIN}
    # define-by-run: a parameter outside the mixture space, and one only some trials ask for
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    kind = trial.suggest_categorical("kind", ["lora", "full"]) if trial.number % 2 else "lora"
    assert 1e-4 <= lr <= 1e-1 and kind in ("lora", "full")
    counts = counts_from_point(point, BUDGET, PLAN.caps)
    scores = {a: true_score(a, counts[a]) for a in GAIN}
    trial.set_user_attr(SCORES_ATTR, scores)
    return sum(scores.values()) / len(scores)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_samples_define_by_run_and_relative_params_and_reseeds(name):
    def params(sampler, reseed=False):
        if reseed:
            sampler.reseed_rng()
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.enqueue_trial({f"u_{a}": u for a, u in uniform_point(list(GAIN)).items()})
        study.optimize(_objective, n_trials=6)
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
        assert all({f"u_{a}" for a in GAIN} | {"lr"} <= set(t.params) for t in study.trials)
        if name in ("gp", "cmaes", "growth"):  # the samplers that model the mixture space jointly
            relative = sampler.infer_relative_search_space(study, study.trials[-1])
            assert {f"u_{a}" for a in GAIN} <= set(relative)
        return [t.params for t in study.trials]

    first = params(_sampler(name, seed=3))
    assert first == params(_sampler(name, seed=3))  # the same seed, the same search
    assert params(_sampler(name, seed=3), reseed=True)[1:] != first[1:]  # reseeded: another stream


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_runs_inside_a_real_tune_search(name, tmp_path, ray_session):
    from ray import tune

    sampler = _sampler(name)
    searcher = scored_search(sampler, [uniform_point(list(GAIN))])
    tuner = tune.Tuner(
        synthetic_tune_trial,
        param_space={f"u_{a}": tune.uniform(0.0, 1.0) for a in GAIN},
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=5, max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert not results.errors and len(results) == 5
    trials = searcher.optuna_study.trials
    assert searcher.sampler is sampler and len(trials) == 5
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 5 and all(set(t.user_attrs[SCORES_ATTR]) == set(GAIN) for t in complete)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 5  # five different mixtures
    if name == "growth":  # from its second startup trial on, the model proposed
        assert sampler.proposals


def test_the_cli_offers_the_same_samplers(call_cli, tmp_path):
    proc = call_cli("optimize", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "{" + ",".join(SAMPLERS) + "}" in proc.stdout
