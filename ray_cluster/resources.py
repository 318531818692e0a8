"""Per-trial resources, and how many trials fit side by side."""

from __future__ import annotations

import math

from ray_cluster.errors import ClusterError

__all__ = ["max_concurrent_trials", "trial_resources"]


def trial_resources(cpus: float, gpus: float) -> dict[str, float]:
    """What one proxy run reserves. On CPU, one thread per trial and trials side by
    side beat one multi-threaded trial (../shared/PLATFORM.md)."""
    res = {"cpu": cpus}
    if gpus:
        res["gpu"] = gpus
    return res


def max_concurrent_trials(cluster: dict[str, float], cpus: float, gpus: float, limit: int | None) -> int:
    """Trials that fit at once in ``cluster`` (``ray.cluster_resources()``), capped by ``limit``."""
    fit = math.floor(cluster.get("CPU", 0) / cpus + 1e-9)
    if gpus:
        fit = min(fit, math.floor(cluster.get("GPU", 0) / gpus + 1e-9))
    if fit < 1:
        need = f"{cpus} CPU" + (f" and {gpus} GPU" if gpus else "")
        have = f"{cluster.get('CPU', 0)} CPU" + (f" and {cluster.get('GPU', 0)} GPU" if gpus else "")
        raise ClusterError(f"resources: a trial needs {need}, the Ray cluster has {have}")
    return min(fit, limit) if limit else fit
