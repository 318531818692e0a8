"""How a job reaches Ray (a local instance or a cluster), what a trial asks of it, and a
data-parallel fine-tune on Ray Train launched from a trial (``train``).

Imports Ray and nothing of ``allocator``: what a cluster must ship to its workers (the
caller's packages, environment variables) is passed in. Raises ``ClusterError``.
"""

from ray_cluster.connect import HUB_ENV, check_address, connect, disconnect
from ray_cluster.errors import ClusterError
from ray_cluster.resources import max_concurrent_trials, trial_resources
from ray_cluster.train import LAUNCHER_CPUS, fit_data_parallel

__all__ = [
    "HUB_ENV",
    "LAUNCHER_CPUS",
    "ClusterError",
    "check_address",
    "connect",
    "disconnect",
    "fit_data_parallel",
    "max_concurrent_trials",
    "trial_resources",
]
