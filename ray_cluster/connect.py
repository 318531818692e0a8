"""Start Ray locally (the default) or join a running cluster by address."""

from __future__ import annotations

import os
from typing import Any

from allocator.errors import UserError, first_line

__all__ = ["connect", "disconnect"]


def _project_modules() -> list[Any]:
    import allocator
    import ray_cluster
    import trainers

    return [allocator, trainers, ray_cluster]


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Make Ray available to this process; return True when this call started it.

    Locally Ray runs without its dashboard. Ray 2.60's core servers (GCS, raylet,
    workers) listen on the machine's address whatever node IP is asked for
    (``ray.init`` rewrites 127.0.0.1 to a reachable IP), so they are protected by
    Ray's token authentication, which is on by default and left on here. Joining a
    cluster ships this project's packages to its workers (``py_modules``), so the
    cluster only needs the same third-party packages installed.
    """
    import ray

    if ray.is_initialized():
        return False
    passed = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "ALLOCATOR_CACHE_DIR", "ALLOCATOR_INJECT_FAULTS")
    env = {k: os.environ[k] for k in passed if k in os.environ}
    if address:
        try:
            ray.init(
                address=address,
                runtime_env={"py_modules": _project_modules(), "env_vars": env},
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = first_line(e)
            raise UserError(f"--ray-address {address}: cannot join the Ray cluster: {first}") from None
        return True
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        runtime_env={"env_vars": env} if env else None,
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
