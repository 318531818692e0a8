"""Start Ray locally (the default) or join a running cluster by address."""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType

from ray_cluster.errors import ClusterError, first_line

__all__ = ["HUB_ENV", "connect", "disconnect"]

# what a worker needs to behave like the driver with the Hugging Face libraries (offline mode
# is read at their import: a worker must get it from its environment)
HUB_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def connect(
    address: str | None = None,
    num_cpus: int | None = None,
    *,
    py_modules: Sequence[ModuleType] = (),
    env_vars: Sequence[str] = HUB_ENV,
) -> bool:
    """Make Ray available to this process; return True when this call started it.

    Locally Ray starts a new instance of its own, without its dashboard. Ray 2.60's core servers (GCS, raylet,
    workers) listen on the machine's address whatever node IP is asked for
    (``ray.init`` rewrites 127.0.0.1 to a reachable IP), so they are protected by
    Ray's token authentication, which is on by default and left on here. Joining a
    cluster ships ``py_modules`` (the caller's own packages) to its workers, so the
    cluster only needs the same third-party packages installed. The environment
    variables named in ``env_vars`` reach the workers with the values they have here.
    """
    import ray

    if ray.is_initialized():
        return False
    from ray_cluster.train import TRAIN_ENV

    env = {**TRAIN_ENV, **{k: os.environ[k] for k in (*env_vars, *TRAIN_ENV) if k in os.environ}}
    if address:
        try:
            ray.init(
                address=address,
                runtime_env={"py_modules": list(py_modules), "env_vars": env},
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ClusterError(f"--ray-address {address}: cannot join the Ray cluster: {first_line(e)}") from None
        return True
    ray.init(
        # "local": a new instance, never a cluster that `ray start` left on this machine (which
        # ray.init() without an address joins) nor RAY_ADDRESS's: joining is --ray-address's job
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        runtime_env={"env_vars": env},
        # trial output (peft and transformers warnings) stays in Ray's logs; the
        # driver prints one line per finished trial instead
        log_to_driver=False,
        configure_logging=False,
    )
    return True


def disconnect(started: bool) -> None:
    """Shut Ray down if ``connect`` started it; leave a joined cluster or a caller's Ray alone."""
    import ray

    if started and ray.is_initialized():
        ray.shutdown()
