"""The target fine-tune of a confirmation: one Tune trial that launches a data-parallel run on
Ray Train and reports what its rank 0 evaluates.

A confirmation's grid holds proxy runs and target runs (allocator.studies.confirm); its one
trainable, ``run_grid_trial``, runs a proxy run as every other job does
(allocator.trial.worker.run_trial) and a target run with ``run_target``: the trial itself
reserves almost no CPU (ray_cluster.LAUNCHER_CPUS) and starts ``workers`` Ray Train workers
(ray_cluster.fit_data_parallel), each running ``target_loop``: the trainers' loop
(trainers.proxy.run_proxy with the target's recipe, ``full`` by default), data-parallel over
the workers. Rank 0 evaluates on the proxies' held-out sets with their scorer and reports
the same metrics as a proxy run (allocator.trial.worker.trial_metrics), which reach the Tune
trial and so the driver's one MLflow writer; at the end it writes the weights in safetensors
(trainers.checkpoint) to the folder the driver chose for the run, under the run storage
(shared storage on several nodes). With ``target.workers: 1`` the trial trains the target
itself, with the worker's resources: one worker needs no process group, and Ray Train's
start and teardown (about 15 s a run on 2 cores, docs/BENCHMARKS.md) would cost more than a
small target's training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from allocator.trial.setup import TrialSetup
from allocator.trial.worker import injected_fault, run_trial, train_mixture

__all__ = ["TargetLaunch", "run_grid_trial", "run_target", "target_loop", "train_target"]


@dataclass(frozen=True)
class TargetLaunch:
    """How a target run is launched: its Ray Train workers and their resources, where Ray
    Train keeps its state, and which runs (by grid index) keep their weights, where."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    storage_path: str
    checkpoints: Mapping[int, str]


def target_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker of a target run (module doc)."""
    from ray import train

    train_target(config, train.report)


def train_target(config: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    """The target fine-tune of one run on this process (one rank of it when ``torch.distributed``
    is initialized), each evaluation's metrics handed to ``send``."""
    import torch.distributed as dist

    from trainers.checkpoint import save_weights

    setup: TrialSetup = config["setup"]
    rank = dist.get_rank() if dist.is_initialized() else 0

    def checkpoint(net: Any) -> None:
        if rank == 0 and config["checkpoint"]:
            save_weights(net, config["checkpoint"], setup.tokenizer)

    # every rank reports (Ray Train's report is collective); rank 0's metrics reach Tune
    train_mixture(setup, config["mixture"], config["seed"], send, checkpoint)


def run_target(params: dict[str, Any], setup: TrialSetup, launch: TargetLaunch) -> None:
    """One target run (a Tune function trainable): its grid run's mixture and seed, trained on
    ``launch.workers`` Ray Train workers."""
    injected_fault()
    from ray import tune

    from ray_cluster.train import fit_data_parallel

    mixture, seed = setup.mixture(params)
    config = {
        "setup": setup,
        "mixture": mixture,
        "seed": seed,
        "checkpoint": launch.checkpoints.get(int(params["run"])),
    }
    if launch.workers == 1:  # one worker needs no process group: this trial trains it (no ~15 s Ray Train start)
        train_target(config, tune.report)
        return
    fit_data_parallel(
        target_loop,
        config,
        workers=launch.workers,
        cpus_per_worker=launch.cpus_per_worker,
        gpus_per_worker=launch.gpus_per_worker,
        storage_path=launch.storage_path,
        name=f"target-{tune.get_context().get_trial_id()}",
    )


def run_grid_trial(
    params: dict[str, Any],
    proxy: TrialSetup,
    target: TrialSetup,
    launch: TargetLaunch,
    stages: tuple[str, ...],
) -> None:
    """A run of a confirmation's grid: a proxy run or a target run, as ``stages`` (by grid
    index) says (a Tune function trainable; the rest through ``tune.with_parameters``)."""
    if stages[int(params["run"])] == "target":
        run_target(params, target, launch)
    else:
        run_trial(params, proxy)
