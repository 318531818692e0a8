"""The real CLI and the Python API end to end: Ray Tune + Optuna + peft + MLflow, tiny sizes."""

import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from .helpers import SMOKE, loss_config, start_mlflow_server, stop_process, succeeded
from .helpers import SUITE as ABILITIES


def _check_store(uri, experiment_id, parent_id, n_trials, used=None):
    client = MlflowClient(uri)
    runs = client.search_runs([experiment_id])
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    kinds = sorted(r.data.tags["allocator.kind"] for r in children)
    assert kinds == ["baseline"] + ["search"] * n_trials
    for r in children:
        assert r.info.status == "FINISHED"
        assert {f"exact_match/{a}" for a in ABILITIES} <= set(r.data.metrics)
        assert {f"score/{a}" for a in ABILITIES} <= set(r.data.metrics)
        assert len(r.data.params["data_hash"]) == 64
        assert {f"loss/{a}" for a in ABILITIES} <= set(r.data.metrics)
        assert "objective" in r.data.metrics
        total = sum(int(r.data.params[f"mixture.{a}"]) for a in ABILITIES)
        assert total == (used[r.data.tags["mlflow.runName"]] if used else 120)
    names = {a.path for a in client.list_artifacts(parent_id)}
    assert {"config.json", "pool.json", "recommendation.json"} <= names
    return children


def _optimize(run_cli, cwd, uri, trials):
    """The real CLI on the smoke config; returns the process and the --output JSON."""
    proc = run_cli(
        "optimize",
        "--config",
        str(SMOKE),
        "--trials",
        str(trials),
        "--tracking-uri",
        uri,
        "--output",
        "out.json",
        cwd=cwd,
    )
    return proc, succeeded(proc, cwd / "out.json")


def test_cli_optimize_end_to_end(tmp_path, run_cli, call_cli):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    proc, out = _optimize(run_cli, tmp_path, uri, trials=2)

    assert sum(out["best"]["mixture"].values()) == 120
    assert set(out["best"]["scores"]) == set(ABILITIES)
    assert isinstance(out["best"]["objective"], float)
    assert out["baselines"]["uniform"]["mixture"] == {
        "first": 17,
        "copy": 17,
        "upper": 17,
        "sort": 17,
        "count": 17,
        "add": 18,
        "reverse": 17,
    }
    assert set(out["baselines"]["uniform"]["scores"]) == set(ABILITIES)
    assert isinstance(out["baselines"]["uniform"]["objective"], float)
    assert len(out["trials"]) == 3
    assert all(t["status"] == "FINISHED" and set(t["mixture"]) == set(ABILITIES) for t in out["trials"])
    searched = [t for t in out["trials"] if t["kind"] == "search"]
    assert out["best"]["objective"] == max(t["objective"] for t in searched)
    assert out["mlflow"]["tracking_uri"] == uri
    _check_store(uri, out["mlflow"]["experiment_id"], out["mlflow"]["parent_run_id"], 2)

    # what a person sees: the config, a line per trial, the summary
    assert "resolved config:" in proc.stdout
    assert proc.stdout.count("FINISHED") == 3
    assert "best mixture:" in proc.stdout and "mlflow ui --backend-store-uri" in proc.stdout
    assert (tmp_path / "allocator_runs").is_dir()

    # a recommendation for another budget from the search's trials, by file and by run id
    rec = call_cli("recommend", "--from", "out.json", "--budget", "100", "--json", cwd=tmp_path)
    assert rec.returncode == 0, rec.stderr[-3000:]
    r = json.loads(rec.stdout)
    assert sum(r["counts"].values()) == 100 and "3 finished trials" in r["method"]
    assert r["alternatives"]["search_best"]["measured"] == out["best"]["objective"]
    by_run = call_cli(
        "recommend",
        "--from",
        out["mlflow"]["parent_run_id"],
        "--budget",
        "100",
        "--json",
        "--tracking-uri",
        uri,
        cwd=tmp_path,
    )
    assert by_run.returncode == 0 and json.loads(by_run.stdout)["counts"] == r["counts"]
    # confirming it: at the search's budget only (its baseline and best were measured there);
    # a study's --design means nothing for an optimization
    smoke = str(SMOKE)
    for args, message in [
        (["--budget", "100"], "its measured mixtures have 120 examples, not 100: confirm at the budget they share"),
        (["--design", "joint"], "design 'joint' picks a study's curves; an optimization's result has none"),
    ]:
        bad = call_cli("confirm", "--config", smoke, "--from", "out.json", *args, "--tracking-uri", uri, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-2000:]


@pytest.mark.parametrize("sampler", ["random"])
def test_python_api(tmp_path, cache_dir, monkeypatch, sampler, ray_session):
    import allocator

    monkeypatch.chdir(tmp_path)
    lines = []
    # bounds, a floor and two objectives (objective, examples) on the built-in suite
    bounds = {"minimum": {"add": 30}, "maximum": {"first": 5}, "floor": 0.5}
    mo = {"multi_objective": True, "min_budget_fraction": 0.5}
    result = allocator.optimize(
        SMOKE,
        trials=1,
        search={"sampler": sampler, **bounds, **mo},
        printer=lines.append,
    )
    d = result.to_dict()
    assert all(t["mixture"]["add"] >= 30 and t["mixture"]["first"] <= 5 for t in d["trials"])
    used = {t["name"]: sum(t["mixture"].values()) for t in d["trials"]}
    assert used["uniform-baseline"] == 120 and 60 <= used["trial-001"] <= 120
    front = d["pareto"]["front"]
    assert front and [p["examples"] for p in front] == sorted(p["examples"] for p in front)
    assert d["pareto"]["cheapest_within"]["5%"] in {p["name"] for p in front}
    assert any(ln.startswith("Pareto front") for ln in lines)
    assert d["mlflow"]["tracking_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert len(d["trials"]) == 2 and d["best"]["name"] == "trial-001"
    _check_store(d["mlflow"]["tracking_uri"], d["mlflow"]["experiment_id"], d["mlflow"]["parent_run_id"], 1, used)
    assert any(ln.startswith("best mixture:") for ln in lines)
    assert [t["origin"] for t in d["trials"]] == ["baseline: the uniform mixture", f"{sampler} sampler"]

    # a warm start from that result (by its MLflow run id): its 2 trials join the Optuna
    # study, so the growth-curve model proposes the very first searched mixture; the base
    # built (or found) by the first run is found in the cache, not built again
    weights = Path(d["base_model"]["path"]) / "model.safetensors"
    built = weights.stat().st_mtime_ns
    lines.clear()
    warm = allocator.optimize(
        SMOKE,
        trials=1,
        search={"sampler": "growth", "n_startup_trials": 1, "warm_start": d["mlflow"]["parent_run_id"]},
        printer=lines.append,
    ).to_dict()
    full = sum(n == 120 for n in used.values())  # only the whole-budget trials are points of this landscape
    assert warm["warm_start"]["kind"] == "optimize" and warm["warm_start"]["trials_added"] == full
    assert warm["best"]["origin"].startswith("growth model: predicted")
    assert isinstance(warm["best"]["predicted"], float)
    runs = MlflowClient(warm["mlflow"]["tracking_uri"]).search_runs([warm["mlflow"]["experiment_id"]])
    origins = {r.data.params.get("origin") for r in runs if r.data.tags.get("mlflow.parentRunId")}
    assert warm["best"]["origin"] in origins
    assert warm["base_model"]["path"] == d["base_model"]["path"] and weights.stat().st_mtime_ns == built
    assert not any("building the base model" in ln for ln in lines)
    assert any(ln.startswith("base model: ") for ln in lines)


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 (one worker, no job runner: starts in seconds)."""
    proc, url = start_mlflow_server(tmp_path)
    try:
        yield url
    finally:
        stop_process(proc)


@pytest.mark.slow  # ~1 min: the HTTP store path; every other test uses SQLite through the same client
def test_cli_against_a_real_mlflow_server(tmp_path, run_cli, mlflow_server):
    _, out = _optimize(run_cli, tmp_path, mlflow_server, trials=1)
    assert out["mlflow"]["tracking_uri"] == mlflow_server
    _check_store(mlflow_server, out["mlflow"]["experiment_id"], out["mlflow"]["parent_run_id"], 1)
    assert not (tmp_path / "mlflow.db").exists(), "nothing may go to a local store when a server is given"


def test_a_deleted_experiment_is_a_user_error(tmp_path):
    from allocator.errors import UserError
    from allocator.report.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(UserError, match="experiment 'gone' is deleted"):
        Tracker(uri, "gone")


def _faulty(tmp_path, call_cli, inject_faults, fail, trials):
    """The CLI's entry point with the given trials (0: the baseline) failing in their worker."""
    import yaml

    from .helpers import loss_config

    inject_faults(*fail)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(loss_config(tmp_path, trials=trials)))
    return call_cli("optimize", "--config", str(config), "--output", "out.json", cwd=tmp_path)


FAULT_ERRORS = {  # the last line of each failed trial's error, in part
    "fail": "injected fault: trial",
    "nan": "FloatingPointError: training loss is nan",
    "oom": "can't allocate memory",  # torch's CPU allocator (a RuntimeError), or Python's MemoryError
    "kill": "its worker process has died",  # Ray's ActorDiedError
}


def test_failing_trials_are_failed_everywhere_and_the_best_comes_from_the_rest(tmp_path, call_cli, inject_faults):
    """One trial raises, one diverges for real (lr 1e30), one runs out of memory for real (an
    address-space limit in its worker), one's worker is SIGKILLed: each ends FAILED in Tune's
    result, in MLflow and in Optuna with its error, and the search goes on."""
    from .helpers import job_runs

    for k, fault in enumerate(FAULT_ERRORS, start=1):
        inject_faults(k, fault=fault)
    cfg = loss_config(tmp_path, trials=5)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = call_cli("optimize", "--config", "c.yaml", "--output", "out.json", cwd=tmp_path)
    out = succeeded(proc, tmp_path / "out.json")
    assert [t["status"] for t in out["trials"]] == ["FINISHED", *["FAILED"] * 4, "FINISHED"]
    parent, children = job_runs(out["mlflow"]["tracking_uri"], out["mlflow"]["parent_run_id"])
    for t, (fault, error) in zip(out["trials"][1:5], FAULT_ERRORS.items(), strict=True):
        assert t["objective"] is None and (error in t["error"] or (fault == "oom" and "MemoryError" in t["error"]))
        run = children[t["mlflow_run_id"]]
        assert run.info.status == "FAILED" and run.data.tags["allocator.error"] == t["error"], fault
    finished = [t for t in out["trials"] if t["status"] == "FINISHED"]
    assert {children[t["mlflow_run_id"]].info.status for t in finished} == {"FINISHED"}
    assert out["best"]["name"] == "trial-005" and out["best"]["objective"] == finished[-1]["objective"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["failed_trials"] == 4
    states = (
        [t["state"] for t in out["search_stats"]["optuna_trials"]]
        if "optuna_trials" in out.get("search_stats", {})
        else None
    )
    assert states is None or states.count("FAIL") == 4
    assert proc.stdout.count("FAILED") == 4


def test_a_retried_trial_is_one_optuna_trial_and_one_mlflow_run_with_its_attempts(tmp_path, call_cli, inject_faults):
    # resources.max_failures 1: trial-001's first attempt raises, Tune runs it again, it finishes
    from .helpers import job_runs

    inject_faults(1)
    cfg = loss_config(tmp_path, trials=1, resources={"max_failures": 1})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = call_cli("optimize", "--config", "c.yaml", "--output", "out.json", cwd=tmp_path)
    out = succeeded(proc, tmp_path / "out.json")
    assert [(t["name"], t["status"], t["attempts"]) for t in out["trials"]] == [
        ("uniform-baseline", "FINISHED", 0),
        ("trial-001", "FINISHED", 1),
    ]
    assert out["search_stats"]["optuna_states"] == {"COMPLETE": 2}
    _, children = job_runs(out["mlflow"]["tracking_uri"], out["mlflow"]["parent_run_id"])
    assert len(children) == 2 and {r.info.status for r in children.values()} == {"FINISHED"}
    run = children[out["trials"][1]["mlflow_run_id"]]
    assert run.data.tags["allocator.attempts"] == "2"
    assert "injected fault: trial" in run.data.tags["allocator.attempt_1.error"]
    assert "trial-001 failed (attempt 1), retried" in proc.stdout


def test_when_every_trial_fails_the_job_fails_and_its_parent_run_says_so(tmp_path, call_cli, inject_faults):
    proc = _faulty(tmp_path, call_cli, inject_faults, fail=range(2), trials=1)
    assert proc.returncode == 1 and "the uniform baseline trial did not finish" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "out.json").exists()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("allocator").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert parent.info.status == "FAILED"
    assert len(children) == 2 and {r.info.status for r in children} == {"FAILED"}
    assert all("injected fault" in r.data.tags["allocator.error"] for r in children)
