"""Nothing lost, statuses true: a killed or interrupted driver, through the real CLI."""

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from .helpers import SMOKE


def _start(tmp_path, cache_dir, trials):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "ALLOCATOR_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1"}
    args = ["optimize", "--config", str(SMOKE), "--trials", str(trials), "--tracking-uri", uri]
    # its own process group: Ray's helper processes outlive a SIGKILLed driver and must be reaped
    proc = subprocess.Popen(
        [sys.executable, "-m", "allocator", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return proc, uri


def _wait_for_a_finished_trial(proc):
    deadline = time.time() + 240
    assert proc.stdout is not None
    for line in proc.stdout:
        if "FINISHED" in line:
            return line
        assert time.time() < deadline, "no trial finished in time"
    raise AssertionError("the run ended before any trial finished")


def _reap(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _runs(uri):
    client = MlflowClient(uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "allocator"]
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_finished_trials_survive_a_killed_driver(tmp_path, cache_dir):
    proc, uri = _start(tmp_path, cache_dir, trials=6)
    try:
        _wait_for_a_finished_trial(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _reap(proc)
    parents, children = _runs(uri)
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert finished, "the trial that finished before the kill must be FINISHED in MLflow"
    assert all("objective" in r.data.metrics for r in finished)
    # the run that was cut off says so: never FINISHED
    assert [p.info.status for p in parents] == ["RUNNING"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_marks_the_run_killed(tmp_path, cache_dir, sig):
    proc, uri = _start(tmp_path, cache_dir, trials=6)
    try:
        _wait_for_a_finished_trial(proc)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        _reap(proc)
    assert "Traceback" not in out, out[-2000:]
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "allocator: interrupted" in out, out[-2000:]
    else:
        # Ray's driver turns SIGTERM into sys.exit(15), which ends the run KILLED (allocator
        # then exits 143), but Ray's own C++ failure handler may abort the process after it
        assert proc.returncode in (143, -signal.SIGABRT, 128 + signal.SIGABRT), out[-2000:]
    parents, children = _runs(uri)
    assert [p.info.status for p in parents] == ["KILLED"]
    statuses = {r.info.status for r in children}
    # the trials that finished are FINISHED; the one running when the signal came never finished
    assert statuses == {"FINISHED", "KILLED"}, statuses
    for r in children:
        if r.info.status == "KILLED":
            assert r.info.end_time is not None and "allocator.error" not in r.data.tags
