"""The search layer against real Ray Tune, Optuna and MLflow: what a failing trial leaves behind."""

import pytest
from mlflow import MlflowClient

from allocator.config import load_config
from allocator.optimize import prepare_pools
from allocator.search import run_search, trial_metrics
from allocator.tracking import Tracker
from ray_cluster import connect, disconnect

from .test_e2e import SMOKE


def test_trial_metrics_normalize_each_ability_by_its_own_metric():
    raw = {"a": {"exact_match": 1.0, "loss": 0.1}, "b": {"loss": 2.0}}
    base = {"a": {"exact_match": 0.2, "loss": 3.0}, "b": {"loss": 4.0}}
    metrics = {"a": "exact_match", "b": "loss"}
    m = trial_metrics(raw, metrics, base, {"a": 1.0, "b": 1.0})
    assert m["score/a"] == pytest.approx(1.0) and m["score/b"] == pytest.approx(0.5)
    assert m["objective"] == pytest.approx(0.75)
    assert m["exact_match/a"] == 1.0 and "exact_match/b" not in m and m["loss/b"] == 2.0
    assert trial_metrics(raw, metrics, base, {"a": 0.0, "b": 2.0})["objective"] == pytest.approx(0.5)


def test_failing_trials_are_failed_runs_with_their_error(tmp_path, cache_dir):
    cfg = load_config(SMOKE, {"trials": 1})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "failing")
    parent = tracker.start_parent("failing", cfg.to_dict(), {})
    lines = []
    started = connect(None, 2)
    try:
        pools, tok, _ = prepare_pools(cfg)
        plan = pools.plan("examples", cfg.budget)
        setup = {
            "config": cfg.to_dict(),
            "abilities": pools.abilities,
            "plan": plan,
            "base_weights": b"these bytes are not safetensors",  # every trial raises in its worker
            "tokenizer": tok.spec(),
            "train": pools.shipped(plan),
            "heldout": pools.heldout,
            "metrics": pools.metrics,
            "max_new": pools.max_new,
            "max_repeats": pools.max_repeats,
            "base_scores": {a: {"exact_match": 0.0, "loss": 1.0} for a in pools.abilities},
            "weights": cfg.objective_weights(pools.abilities),
        }
        records = run_search(
            config=cfg.to_dict(),
            setup=setup,
            data_hash=pools.data_hash,
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
