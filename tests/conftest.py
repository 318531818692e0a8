"""Shared test setup: offline, no telemetry, a private model cache, the real CLI."""

from __future__ import annotations

import os

# before any of these libraries is imported: setting them later has no effect
for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
}.items():
    os.environ.setdefault(_k, _v)

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole session: the smoke base is built once."""
    path = tmp_path_factory.mktemp("allocator-cache")
    os.environ["ALLOCATOR_CACHE_DIR"] = str(path)
    return path


@pytest.fixture
def run_cli(cache_dir: Path):
    """Run the installed ``allocator`` command in a folder; returns the CompletedProcess."""

    def run(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "ALLOCATOR_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1", **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "allocator", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def call_cli(cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """The CLI's own entry point (``allocator.cli.main``) in this process: the same code as
    ``run_cli`` without a new interpreter's imports (seconds a call). A job run this way uses
    the Ray already running in this process (ask for ``ray_session``), which environment
    variables set later do not reach. Returns a CompletedProcess like ``run_cli``."""
    from allocator.cli import main

    def call(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's own errors
            code = int(e.code or 0)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    return call


@pytest.fixture(scope="session")
def ray_session(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One local Ray for the tests that run jobs in this process (a job leaves a Ray it did
    not start running), started as a job starts it, after the model cache is set. Its workers
    inject faults (allocator.trial.worker) from a folder of this session's: ``inject_faults``."""
    from allocator.trial.runner import WORKER_ENV
    from allocator.trial.worker import FAULTS_ENV
    from ray_cluster import connect, disconnect

    faults = tmp_path_factory.mktemp("faults")
    os.environ[FAULTS_ENV] = str(faults)  # for the workers alone: the CLI runs of run_cli never see it
    try:
        started = connect(None, 2, env_vars=WORKER_ENV)
    finally:
        del os.environ[FAULTS_ENV]
    yield faults
    disconnect(started)


@pytest.fixture
def inject_faults(ray_session: Path):
    """``fail(k, ..., fault="fail")``: the trials that start as number k (0: the first) of the
    next job run in this process meet ``fault`` in their worker (allocator.trial.worker.FAULTS:
    raise, a NaN, out of memory, its process killed)."""
    from allocator.trial.worker import FAULTS

    def fail(*ks: int, fault: str = "fail") -> None:
        assert fault in FAULTS
        offset = len(list(ray_session.glob("started-*")))  # every trial of the session took a number
        for k in ks:
            (ray_session / f"{fault}-{offset + k}").touch()

    yield fail
    for fault in FAULTS:
        for f in ray_session.glob(f"{fault}-*"):
            f.unlink()
