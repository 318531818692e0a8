"""How the driver reaches Ray (a local instance or a cluster) and what a trial asks of it."""

from ray_cluster.connect import connect, disconnect
from ray_cluster.resources import max_concurrent_trials, trial_resources

__all__ = ["connect", "disconnect", "max_concurrent_trials", "trial_resources"]
