"""The search layer against real Ray Tune, Optuna and MLflow: what a failing trial leaves behind."""

import pytest
from mlflow import MlflowClient

from allocator.config import load_config
from allocator.search import objective, run_search
from allocator.tracking import Tracker
from ray_cluster import connect, disconnect

from .test_e2e import SMOKE


def test_objective_is_the_weighted_mean_of_exact_match():
    scores = {"a": {"exact_match": 1.0, "loss": 0.1}, "b": {"exact_match": 0.5, "loss": 2.0}}
    assert objective(scores, {"a": 1.0, "b": 1.0}) == pytest.approx(0.75)
    assert objective(scores, {"a": 0.0, "b": 2.0}) == pytest.approx(0.5)


def test_failing_trials_are_failed_runs_with_their_error(tmp_path, cache_dir):
    cfg = load_config(SMOKE, {"trials": 1})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "failing")
    parent = tracker.start_parent("failing", cfg.to_dict(), {})
    lines = []
    started = connect(None, 2)
    try:
        records = run_search(
            config=cfg.to_dict(),
            base_weights=b"these bytes are not safetensors",  # every trial raises in its worker
            caps=dict.fromkeys(cfg.suite.abilities, cfg.suite.pool_size),
            weights=cfg.objective_weights(),
            tracker=tracker,
            storage_path=str(tmp_path / "runs"),
            run_name="failing",
            max_concurrent=2,
            resources={"cpu": 1},
            printer=lines.append,
        )
    finally:
        disconnect(started)
    tracker.close("FAILED")
    assert [r.status for r in records] == ["FAILED", "FAILED"]
    assert all(r.error and "Error" in r.error for r in records), [r.error for r in records]
    client = MlflowClient(uri)
    runs = client.search_runs([tracker.experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    assert sorted(r.info.status for r in children) == ["FAILED", "FAILED"]
    assert all("allocator.error" in r.data.tags for r in children)
    assert client.get_run(parent).info.status == "FAILED"
    assert sum("FAILED" in ln for ln in lines) == 2
