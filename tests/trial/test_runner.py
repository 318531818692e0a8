"""The job runner's own duties, through a real job in a fresh process (this test session keeps a
Ray of its own): a cluster that cannot fit a trial is a user error, nothing is written, and
the Ray the job started is shut down."""

import subprocess
import sys

from ..helpers import SMOKE


def test_a_cluster_too_small_for_a_trial_is_a_user_error_and_the_jobs_ray_is_shut_down(tmp_path, cache_dir):
    code = f"""
import ray, allocator
try:
    allocator.optimize({str(SMOKE)!r}, resources={{"gpus_per_trial": 1}}, printer=lambda line: None)
except allocator.UserError as e:
    print("user error:", e)
print("ray running:", ray.is_initialized())
"""
    env = {
        "ALLOCATOR_CACHE_DIR": str(cache_dir),
        "HF_HUB_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "user error: resources: a trial needs 1.0 CPU and 1.0 GPU, the Ray cluster has" in proc.stdout
    assert "ray running: False" in proc.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "allocator_runs").exists()
