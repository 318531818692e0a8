"""How the driver reaches Ray: resources per trial, trials side by side, start and stop."""

import subprocess
import sys

import pytest

from ray_cluster import ClusterError, max_concurrent_trials, trial_resources


def test_trials_side_by_side_follow_the_cluster_and_the_limit():
    assert trial_resources(1.0, 0.0) == {"cpu": 1.0}
    assert trial_resources(2.0, 0.25) == {"cpu": 2.0, "gpu": 0.25}
    assert max_concurrent_trials({"CPU": 8.0}, 1.0, 0.0, None) == 8
    assert max_concurrent_trials({"CPU": 8.0}, 1.0, 0.0, 3) == 3
    assert max_concurrent_trials({"CPU": 16.0, "GPU": 1.0}, 1.0, 0.25, None) == 4  # four proxies share a GPU
    with pytest.raises(
        ClusterError, match=r"a trial needs 1\.0 CPU and 1\.0 GPU, the Ray cluster has 4\.0 CPU and 0 GPU"
    ):
        max_concurrent_trials({"CPU": 4.0}, 1.0, 1.0, None)


def test_connect_starts_ray_once_and_disconnect_stops_only_the_ray_it_started():
    # in a fresh process: this test session keeps a Ray of its own running
    code = """
import ray
from ray_cluster import connect, disconnect
started = connect(None, 1)
assert started and ray.is_initialized()
assert connect(None, 1) is False  # already there: a caller's Ray is left alone
disconnect(False)
assert ray.is_initialized()
disconnect(started)
assert not ray.is_initialized()
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_check_address_accepts_a_real_cluster_and_refuses_what_is_not_one(ray_session):
    # the session's local Ray is a real cluster to join: the probe (TCP, HTTP/2, a test join in
    # a child process) must not refuse it; what is not one is refused without Ray's retries
    import socket
    import time

    import ray

    from ray_cluster import check_address

    check_address(ray.get_runtime_context().gcs_address)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        t = time.perf_counter()
        with pytest.raises(ClusterError, match=r"no answer from 127\.0\.0\.1"):
            check_address(f"127.0.0.1:{s.getsockname()[1]}", timeout=0.5)
        assert time.perf_counter() - t < 5
    with pytest.raises(ClusterError, match="expected HOST:PORT"):
        check_address("head-node")
