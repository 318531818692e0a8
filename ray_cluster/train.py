"""A data-parallel fine-tune on Ray Train, launched from inside a Tune trial.

``fit_data_parallel`` runs a training loop (the caller's function of one ``config`` dict) on
``workers`` Ray Train workers: a ``TorchTrainer`` with a gloo process group on CPUs, nccl on
GPUs, so that ``torch.distributed`` is initialized in the loop (trainers.proxy.run_proxy is
data-parallel then). What the loop reports with ``ray.train.report`` reaches the Tune trial
that launched it (rank 0's metrics; Ray Train V2's ``TuneReportCallback``): the trial
function itself runs the trainer, as Ray 2.60 wants it (``Tuner(trainer)`` is deprecated),
and should reserve almost no CPU itself (``LAUNCHER_CPUS``), or two workers never fit on two
cores. On several nodes ``storage_path`` must be storage every node sees (a shared file
system or a bucket): Ray Train writes its run state and checkpoints there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray_cluster.errors import ClusterError, first_line

__all__ = ["LAUNCHER_CPUS", "TRAIN_ENV", "fit_data_parallel"]

LAUNCHER_CPUS = 0.01  # the Tune trial that only launches and waits for the Ray Train workers
# Ray Train's controller polls its workers every 2 s by default, so a run's end is seen up to
# 2 s late and its teardown took 4 s; at 0.25 s, 1 s (measured: docs/BENCHMARKS.md). Set for
# Ray's processes by ray_cluster.connect unless the environment says otherwise
TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}


def fit_data_parallel(
    loop: Callable[[dict[str, Any]], None],
    config: dict[str, Any],
    *,
    workers: int,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    storage_path: str,
    name: str,
) -> None:
    """Run ``loop(config)`` on ``workers`` data-parallel Ray Train workers from inside a Tune
    trial and wait for it (on GPUs when ``gpus_per_worker`` > 0); a worker's failure raises
    ``ClusterError`` with its first line."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    use_gpu = gpus_per_worker > 0
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if use_gpu else {})}
    trainer = TorchTrainer(
        loop,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=name, storage_path=storage_path, callbacks=[TuneReportCallback()]),
    )
    try:
        trainer.fit()
    except Exception as e:  # Ray Train wraps a worker's error in its own types
        raise ClusterError(f"the data-parallel run {name} failed: {first_line(e)}") from e
