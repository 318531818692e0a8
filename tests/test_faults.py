"""Faults outside a trial, on real components (slow: minutes each; results recorded in
docs/RELIABILITY.md): the tracking server restarted mid-search, and two optimizations into
one store at once. Run with ``pytest -m slow tests/test_faults.py``."""

import json
import time

import pytest
from mlflow import MlflowClient

from .helpers import SMOKE, reap, spawn_cli, start_mlflow_server, stop_process

pytestmark = pytest.mark.slow


def _optimize(tmp_path, cache_dir, uri, trials, output):
    args = ["optimize", "--config", str(SMOKE), "--trials", str(trials), "--tracking-uri", uri, "--output", output]
    return spawn_cli(tmp_path, cache_dir, args)


def _job(uri, parent_id):
    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return client, parent, children


def test_a_tracking_server_restarted_mid_search_loses_nothing(tmp_path, cache_dir):
    """MLflow's client retries a request to a server that is down (7 retries, exponential
    backoff: about four minutes in all); a restart inside that leaves nothing lost."""
    trials = 4
    server, uri = start_mlflow_server(tmp_path)
    port = int(uri.rsplit(":", 1)[1])
    proc = _optimize(tmp_path, cache_dir, uri, trials, "out.json")
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "FINISHED" in line:
                break
        stop_process(server)  # down while trials run and end
        down = time.time()
        time.sleep(10)
        server, _ = start_mlflow_server(tmp_path, port)
        print(f"server down for {time.time() - down:.1f}s")
        out, _ = proc.communicate(timeout=400)
        lines.append(out)
    finally:
        reap(proc)
        stop_process(server)
        server, _ = start_mlflow_server(tmp_path, port)  # to read what it kept
    try:
        text = "".join(lines)
        assert proc.returncode == 0, text[-3000:]
        result = json.loads((tmp_path / "out.json").read_text())
        client, parent, children = _job(uri, result["mlflow"]["parent_run_id"])
        assert parent.info.status == "FINISHED"
        assert len(children) == trials + 1 and {r.info.status for r in children} == {"FINISHED"}
        assert len({r.info.run_name for r in children}) == trials + 1  # none twice
        for r in children:  # each with its metrics and its record
            assert "objective" in r.data.metrics
            assert {"point.json", "record.json"} <= {a.path for a in client.list_artifacts(r.info.run_id)}
        assert len(result["trials"]) == trials + 1
    finally:
        stop_process(server)


def test_two_optimizations_into_one_store_and_folder_at_once(tmp_path, cache_dir):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trials = 2
    procs = [_optimize(tmp_path, cache_dir, uri, trials, f"out{i}.json") for i in (0, 1)]
    try:
        outs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:
            reap(p)
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    results = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in (0, 1)]
    parents = [r["mlflow"]["parent_run_id"] for r in results]
    assert parents[0] != parents[1]
    seen = set()
    for result, parent_id in zip(results, parents, strict=True):
        _client, parent, children = _job(uri, parent_id)
        assert parent.info.status == "FINISHED"
        assert len(children) == trials + 1 and {r.info.status for r in children} == {"FINISHED"}
        ids = {r.info.run_id for r in children}
        assert not ids & seen  # neither's runs mix with the other's
        seen |= ids
        # each job's Tune folder is its own
        assert parent.data.tags["allocator.storage"].endswith(parent_id[:8])
        assert sorted(t["name"] for t in result["trials"]) == sorted(r.info.run_name for r in children)
    exp = MlflowClient(uri).get_experiment_by_name("allocator")
    assert len(MlflowClient(uri).search_runs([exp.experiment_id])) == 2 * (trials + 2)


def test_a_worker_node_lost_mid_search_gets_its_trial_rescheduled(tmp_path, cache_dir, monkeypatch):
    """A 3-node local cluster (a head with no CPU for trials, two 1-CPU workers); once both
    workers run a trial, one node is removed: its trial's worker dies with it, Tune retries the
    trial on the node left (``resources.max_failures``), and the search finishes."""
    import threading

    from ray.cluster_utils import Cluster

    from allocator import optimize

    # the test's own cluster: its driver and its address check join it without a token
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    removed = threading.Event()
    lines = []

    def remove_a_node():
        time.sleep(1.5)  # the freed worker has taken the next trial: both nodes run one
        cluster.remove_node(workers[1])
        removed.set()

    def printer(line):
        lines.append(line)
        print(line, flush=True)
        if "FINISHED" in line and not removed.is_set() and not any(t.name == "remove" for t in threading.enumerate()):
            threading.Thread(target=remove_a_node, name="remove", daemon=True).start()

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trials = 4
    try:
        result = optimize(
            str(SMOKE),
            printer=printer,
            trials=trials,
            ray={"address": cluster.address},
            resources={"cpus_per_trial": 1, "max_failures": 2},
            tracking={"uri": uri},
            storage_path=str(tmp_path / "runs"),
        )
    finally:
        cluster.shutdown()
    assert removed.is_set()
    _, parent, children = _job(uri, result.mlflow["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert len(children) == trials + 1 and {r.info.status for r in children} == {"FINISHED"}
    retried = [r for r in children if r.data.tags.get("allocator.attempts") == "2"]
    assert retried, "the trial on the removed node was not retried: " + "".join(lines)
    errors = " ".join(r.data.tags["allocator.attempt_1.error"] for r in retried)
    assert "died" in errors or "node" in errors.lower(), errors
    assert any("retried" in line for line in lines)
