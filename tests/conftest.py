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
    """The CLI's own entry point (``allocator.cli.main``) in this process, for commands that
    start no Ray job (recommend, user errors): the same code as ``run_cli`` without a new
    interpreter's imports. Returns a CompletedProcess like ``run_cli``."""
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
def ray_session(cache_dir: Path):
    """One local Ray for the tests that run jobs in this process (a job leaves a Ray it did
    not start running): started like a job starts it, after the model cache is set."""
    from ray_cluster import connect, disconnect

    started = connect(None, 2)
    yield
    disconnect(started)
