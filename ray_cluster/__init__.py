"""How a job reaches Ray (a local instance or a cluster) and what a trial asks of it.

Imports Ray and nothing of ``allocator``: what a cluster must ship to its workers (the
caller's packages, environment variables) is passed in. Raises ``ClusterError``.
"""

from ray_cluster.connect import HUB_ENV, connect, disconnect
from ray_cluster.errors import ClusterError
from ray_cluster.resources import max_concurrent_trials, trial_resources

__all__ = ["HUB_ENV", "ClusterError", "connect", "disconnect", "max_concurrent_trials", "trial_resources"]
