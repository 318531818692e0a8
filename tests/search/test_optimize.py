"""The search's features through the real ``allocator.optimize`` (Ray Tune + Optuna + peft +
MLflow), on user data whose loss-scored abilities make the objective move with the mixture:
early stopping, floors, two objectives, token budgets, and what MLflow holds against the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import allocator

from ..helpers import job_runs, loss_config


def _optimize(tmp_path: Path, **kw) -> tuple[dict, list[str]]:
    lines: list[str] = []
    result = allocator.optimize(loss_config(tmp_path, **kw), printer=lines.append).to_dict()
    json.dumps(result, allow_nan=False)
    return result, lines


def _searched(d: dict, status: str = "FINISHED") -> list[dict]:
    return [t for t in d["trials"] if t["kind"] == "search" and t["status"] == status]


def test_asha_stops_trials_never_the_baseline_or_the_best_and_the_parent_records_the_saving(tmp_path, ray_session):
    d, lines = _optimize(
        tmp_path,
        trials=5,
        proxy={"epochs": 4, "max_new_tokens": 6, "reports": 3},
        search={"scheduler": "asha", "sampler": "random"},
    )
    stopped = _searched(d, "EARLY_STOPPED")
    assert stopped, "one trial at a time, the run is deterministic: ASHA stops some of these 5"
    (base,) = [t for t in d["trials"] if t["kind"] == "baseline"]
    assert base["status"] == "FINISHED" and base["evaluations"] == 3 and base["steps"] == base["steps_total"]
    assert all(t["evaluations"] < 3 and t["steps"] < t["steps_total"] for t in stopped)
    # the best is a searched trial that ran to the end, the best of those
    assert d["best"]["name"] not in {t["name"] for t in stopped}
    assert d["best"]["objective"] == max(t["objective"] for t in _searched(d))
    stats = d["search_stats"]
    assert stats["early_stopped"] == len(stopped)
    trained = sum(t["steps"] for t in d["trials"])
    assert stats["steps_trained"] == trained and stats["steps_without_early_stopping"] == sum(
        t["steps_total"] for t in d["trials"]
    )
    parent, children = job_runs(d["mlflow"]["tracking_uri"], d["mlflow"]["parent_run_id"])
    assert parent.data.metrics["compute_saved"] == pytest.approx(stats["compute_saved"])
    assert parent.data.metrics["early_stopped_trials"] == len(stopped)
    for t in d["trials"]:
        run = children[t["mlflow_run_id"]]
        assert run.info.status == "FINISHED"  # stopped early is not a failure
        assert (run.data.tags.get("allocator.early_stopped") == "true") == (t["status"] == "EARLY_STOPPED")
    assert any(line.startswith("early stopping (asha): ") for line in lines)


def test_a_floor_keeps_violators_from_the_recommendation_down_to_the_uniform_mixture(tmp_path, ray_session):
    # deterministic (one trial at a time): with seed 2, every searched mixture scores some
    # ability below the uniform mixture, one of them with a better objective than uniform's
    d, lines = _optimize(tmp_path, trials=3, seed=2, search={"sampler": "random", "floor": 0.0})
    (base,) = [t for t in d["trials"] if t["kind"] == "baseline"]
    searched = _searched(d)
    assert len(searched) == 3 and base["violations"] == []
    for t in searched:
        assert t["violations"] == [a for a, s in t["scores"].items() if s < base["scores"][a] - 0.0]
    assert all(t["violations"] for t in searched), "the floor must trigger for this test to mean anything"
    assert max(t["objective"] for t in searched) > base["objective"]  # the floor, not the objective, decides
    assert d["best"]["name"] == "uniform-baseline" and d["best"]["mixture"] == base["mixture"]
    assert any(line.startswith("no searched mixture meets the floor (0.0)") for line in lines)
    assert any(line.startswith("floor (0.0 below the uniform mixture's score): 3 trials violate it") for line in lines)
    _, children = job_runs(d["mlflow"]["tracking_uri"], d["mlflow"]["parent_run_id"])
    for t in d["trials"]:
        tag = children[t["mlflow_run_id"]].data.tags.get("allocator.floor_violations")
        assert tag == (",".join(t["violations"]) or None)


def test_two_objectives_with_a_model_based_sampler_give_a_front_nothing_dominates(tmp_path, ray_session):
    d, lines = _optimize(tmp_path, trials=7, search={"sampler": "tpe", "n_startup_trials": 3, "multi_objective": True})
    eligible = [t for t in d["trials"] if t["status"] == "FINISHED" and not t["violations"]]
    used = {t["name"]: sum(t["mixture"].values()) for t in eligible}
    assert all(9 <= n <= 90 for n in used.values()) and len(set(used.values())) > 2
    front = d["pareto"]["front"]
    assert {p["name"] for p in front} <= set(used)
    by_name = {t["name"]: t for t in eligible}

    def dominates(a: dict, b: dict) -> bool:
        oa, ob, na, nb = a["objective"], b["objective"], used[a["name"]], used[b["name"]]
        return oa >= ob and na <= nb and (oa > ob or na < nb)

    for p in front:
        assert p["examples"] == used[p["name"]] and p["objective"] == by_name[p["name"]]["objective"]
        assert not any(dominates(t, by_name[p["name"]]) for t in eligible)
    # and every other eligible trial is dominated by one on the front (the front is complete)
    for t in eligible:
        if t["name"] not in {p["name"] for p in front}:
            assert any(dominates(by_name[p["name"]], t) for p in front)
    top = d["best"]["objective"]
    for pct, name in d["pareto"]["cheapest_within"].items():
        within = [p for p in front if p["objective"] >= top - abs(top) * int(pct[:-1]) / 100]
        assert name == min(within, key=lambda p: p["examples"])["name"]
    assert any(line.startswith("Pareto front") for line in lines)
