"""Shared test setup: offline, no telemetry, a private model cache, the real CLI."""

from __future__ import annotations

import json
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

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "smoke.yaml"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole session: the smoke base is built once."""
    path = tmp_path_factory.mktemp("allocator-cache")
    os.environ["ALLOCATOR_CACHE_DIR"] = str(path)
    return path


@pytest.fixture
def run_cli(cache_dir: Path):
    """Run the installed ``allocator`` command in a folder; returns the CompletedProcess."""

    def run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "ALLOCATOR_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1"}
        return subprocess.run(
            [sys.executable, "-m", "allocator", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def succeeded(proc: subprocess.CompletedProcess, output: Path) -> dict:
    """Assert that a CLI run exited 0 (its output tails as the message) and read the
    JSON it wrote with ``--output``."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(output.read_text())
