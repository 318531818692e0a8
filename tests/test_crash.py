"""Nothing lost, statuses true: a killed or interrupted driver, through the real CLI."""

import json
import os
import signal
import time

import pytest
from mlflow import MlflowClient

from allocator.trial.resume import CONFIG_TAG, LATEST, find_job

from .helpers import SMOKE, reap, spawn_cli


def _args(tmp_path, trials):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return ["optimize", "--config", str(SMOKE), "--trials", str(trials), "--tracking-uri", uri], uri


def _start(tmp_path, cache_dir, trials):
    args, uri = _args(tmp_path, trials)
    return spawn_cli(tmp_path, cache_dir, args), uri


def _wait_for_a_finished_trial(proc):
    deadline = time.time() + 240
    assert proc.stdout is not None
    for line in proc.stdout:
        if "FINISHED" in line:
            return line
        assert time.time() < deadline, "no trial finished in time"
    raise AssertionError("the run ended before any trial finished")


def _runs(uri):
    client = MlflowClient(uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "allocator"]
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def _group_gone(pgid, within=20.0):
    """Whether every process of a session has exited (Ray's helpers take a moment)."""
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False


def test_a_killed_driver_is_resumed(tmp_path, cache_dir):
    trials = 2
    proc, uri = _start(tmp_path, cache_dir, trials=trials)
    try:
        _wait_for_a_finished_trial(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        reap(proc)
    parents, children = _runs(uri)
    # the run that was cut off says so: never FINISHED
    assert [p.info.status for p in parents] == ["RUNNING"]
    kept = {r.info.run_id: r.data.metrics for r in children if r.info.status == "FINISHED"}
    assert kept and all("objective" in m for m in kept.values())
    cut = [r.info.run_id for r in children if r.info.status == "RUNNING"]

    # --resume without a run id: the latest interrupted job of this config (its driver is dead)
    out_json = tmp_path / "result.json"
    args, _ = _args(tmp_path, trials)
    resumed = spawn_cli(tmp_path, cache_dir, [*args, "--resume", "--output", str(out_json)])
    try:
        out, _ = resumed.communicate(timeout=300)
        # no process of the job is left once the resumed run has finished
        assert _group_gone(resumed.pid), "a process of the resumed job outlived it"
    finally:
        reap(resumed)
    assert resumed.returncode == 0, out[-3000:]
    parent = parents[0].info.run_id
    assert f"resuming optimize {parent}: {len(kept)} trials kept, {len(cut)} restart" in out, out
    assert "Tuner.restore" not in out

    parents, children = _runs(uri)
    assert [(p.info.run_id, p.info.status) for p in parents] == [(parent, "FINISHED")]
    # exactly the configured trials (and the baseline), one run each, every one FINISHED
    assert len(children) == trials + 1 and {r.info.status for r in children} == {"FINISHED"}
    assert len({r.info.run_name for r in children}) == trials + 1
    after = {r.info.run_id: r for r in children}
    for run_id, metrics in kept.items():  # kept as they were: never run again
        assert after[run_id].data.metrics == metrics
        assert "allocator.attempts" not in after[run_id].data.tags
    for run_id in cut:  # restarted in their own run, the cut-off attempt recorded
        assert after[run_id].data.tags["allocator.attempts"] == "2"
    result = json.loads(out_json.read_text())
    assert len(result["trials"]) == trials + 1
    assert sorted(t["name"] for t in result["trials"]) == sorted(r.info.run_name for r in children)
    for t in result["trials"]:  # the result holds the kept trials as MLflow does
        run = next(r for r in children if r.info.run_name == t["name"])
        assert t["status"] == "FINISHED" and t["objective"] == pytest.approx(run.data.metrics["objective"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_marks_the_run_killed(tmp_path, cache_dir, sig):
    proc, uri = _start(tmp_path, cache_dir, trials=6)
    try:
        _wait_for_a_finished_trial(proc)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        reap(proc)
    assert "Traceback" not in out, out[-2000:]
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "allocator: interrupted" in out, out[-2000:]
    else:
        # Ray's driver turns SIGTERM into sys.exit(15), which ends the run KILLED (allocator
        # then exits 143), but Ray's own C++ failure handler may abort the process after it
        assert proc.returncode in (143, -signal.SIGABRT, 128 + signal.SIGABRT), out[-2000:]
    parents, children = _runs(uri)
    assert [p.info.status for p in parents] == ["KILLED"]
    # the summary says how to resume it, and --resume without a run id finds it
    parent = parents[0]
    assert f"interrupted: resume with allocator optimize --config {SMOKE}" in out, out[-2000:]
    assert f"--resume {parent.info.run_id}" in out
    client = MlflowClient(uri)
    digest = parent.data.tags[CONFIG_TAG]
    assert find_job(client, "allocator", "optimize", digest, LATEST, uri).info.run_id == parent.info.run_id
    statuses = {r.info.status for r in children}
    # the trials that finished are FINISHED; the one running when the signal came never finished
    assert statuses == {"FINISHED", "KILLED"}, statuses
    for r in children:
        if r.info.status == "KILLED":
            assert r.info.end_time is not None and "allocator.error" not in r.data.tags
