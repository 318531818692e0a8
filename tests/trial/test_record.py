"""What crosses the Ray boundary and comes back: a trial's metrics, its record, the setup."""

import pytest

from allocator.mixture import BudgetPlan
from allocator.trial.record import GRID_FIELDS, SEARCH_FIELDS, Status, TrialRecord
from allocator.trial.setup import GridRun, TrialSetup, mixture_of
from allocator.trial.worker import trial_metrics

# what a trial's mixture does not depend on
SETUP_FIELDS = [f for f in TrialSetup.__dataclass_fields__ if f not in ("plan", "runs")]


def test_trial_metrics_normalize_each_ability_by_its_own_metric():
    raw = {"a": {"exact_match": 1.0, "loss": 0.1}, "b": {"loss": 2.0}}
    base = {"a": {"exact_match": 0.2, "loss": 3.0}, "b": {"loss": 4.0}}
    metrics = {"a": "exact_match", "b": "loss"}
    m = trial_metrics(raw, metrics, base, {"a": 1.0, "b": 1.0})
    assert m["score/a"] == pytest.approx(1.0) and m["score/b"] == pytest.approx(0.5)
    assert m["objective"] == pytest.approx(0.75)
    assert m["exact_match/a"] == 1.0 and "exact_match/b" not in m and m["loss/b"] == 2.0
    assert trial_metrics(raw, metrics, base, {"a": 0.0, "b": 2.0})["objective"] == pytest.approx(0.5)


def test_a_record_takes_each_evaluation_and_keeps_its_jobs_fields():
    rec = TrialRecord("t1", "trial-001", "search", {"a": 3, "b": 1})
    result = {"objective": 0.5, "step": 4, "steps_total": 8, "score/a": 0.6, "score/b": 0.4, "loss/a": 1.0}
    rec.update({**result, "loss/b": 2.0, "exact_match/a": 0.5}, ["a", "b"])
    assert (rec.objective, rec.steps, rec.steps_total, rec.evaluations) == (0.5, 4, 8, 1)
    assert rec.scores == {"a": 0.6, "b": 0.4} and rec.exact_match == {"a": 0.5} and rec.losses == {"a": 1.0, "b": 2.0}
    rec.status = Status.EARLY_STOPPED
    d = rec.to_dict()
    assert tuple(d) == SEARCH_FIELDS and d["status"] == "EARLY_STOPPED" and type(d["status"]) is str
    grid = TrialRecord("t2", "joint-v8-s0", "study-joint", {"a": 8, "b": 8}, design="joint", volume=8, seed=0)
    assert tuple(grid.to_dict()) == GRID_FIELDS and grid.to_dict()["volume"] == 8
    assert Status.EARLY_STOPPED.ended and Status.EARLY_STOPPED.mlflow == "FINISHED" and not Status.RUNNING.ended


def test_a_trial_finds_its_mixture_in_its_parameters():
    plan = BudgetPlan("examples", 100, {"a": 80, "b": 80})
    assert mixture_of({"u_a": 0.5, "u_b": 0.5}, plan) == {"a": 50, "b": 50}
    # a multi-objective search's point also scales the budget
    assert mixture_of({"u_a": 0.5, "u_b": 0.5, "budget_fraction": 0.3}, plan) == {"a": 15, "b": 15}
    # a grid's trial finds its run by index: the run's own mixture and seed, not the search's
    grid = TrialSetup(**dict.fromkeys(SETUP_FIELDS), runs=(GridRun({"a": 1, "b": 2}, 7), GridRun({"a": 3, "b": 0}, 8)))
    assert grid.mixture({"run": 1}) == ({"a": 3, "b": 0}, 8)
    search = TrialSetup(**{**dict.fromkeys(SETUP_FIELDS), "seed": 5}, plan=plan)
    assert search.mixture({"u_a": 0.5, "u_b": 0.5}) == ({"a": 50, "b": 50}, 5)
