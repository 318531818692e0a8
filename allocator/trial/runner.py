"""The one job runner: prepare -> start Ray -> open the MLflow parent -> run the trials ->
close with the true status. Every job (optimize, study, confirm) is a ``Job`` run by ``run_job``.

A job says what is its own: its checks of user input (``check``, before the base is
built; ``trials``, after it), the trials to run (``TrialPlan``: the setup every trial
receives, Tune's parameter space, searcher and scheduler, and how a Tune trial becomes a
record and a printed line), and what it makes of the records (``finish``, while the parent
run is still open). The runner does the rest, once: every user error before anything is
written; Ray started locally or joined; one MLflow child run per trial from the one Tune
callback (allocator.trial.callback); an interrupted or failed job's parent ends KILLED or
FAILED, never FINISHED, and says how to resume it; a Ray this runner started is shut down.
A resumed job (``resume``, allocator.trial.resume) takes up its parent run and its ended
trials, and the job plans only what is left (``Job.resumed``).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allocator.config import OptimizeConfig
from allocator.data.labels import ability_key
from allocator.data.pools import Pools
from allocator.errors import UserError
from allocator.trial.callback import Opener
from allocator.trial.prepare import Prepared, prepare
from allocator.trial.record import Status, TrialRecord
from allocator.trial.resume import Resumed
from allocator.trial.setup import TrialSetup
from ray_cluster import HUB_ENV

__all__ = ["Job", "JobRun", "TrialPlan", "run_job"]

# what Ray's workers must see as the driver does: offline mode, where the hub and its cache are
# (a path must exist on every node), the model cache, fault injection. Not the hub token: Ray
# logs a job's runtime environment, so the token travels with the model reference instead
# (Prepared.base_ref), never logged
WORKER_ENV = (
    *HUB_ENV,
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_ENDPOINT",
    "ALLOCATOR_CACHE_DIR",
    "ALLOCATOR_INJECT_FAULTS",
)


@dataclass
class TrialPlan:
    """The ``trials`` of a job over ``param_space`` (Tune's ``num_samples`` of it: 1 for a grid,
    whose grid search makes the trials; with ``search_alg`` and ``scheduler`` when it
    searches), each receiving ``setup``."""

    setup: TrialSetup
    param_space: dict[str, Any]
    num_samples: int
    trials: int
    opener: Opener  # a Tune trial -> its record and the job's own MLflow params
    line: Callable[[TrialRecord, int], str]  # the printed line of an ended trial (and how many ended)
    announce: Callable[[int], str]  # the line printed before the trials start, given the trials at a time
    search_alg: Any = None
    scheduler: Any = None
    # a trainable of the job's own instead of the proxy's (allocator.trial.worker.run_trial with
    # ``setup``), with its resources per trial (Tune's config -> a placement group factory) and
    # the evaluations a trial that runs to its end reports (default: proxy.reports)
    trainable: Any = None
    resources: Callable[[dict[str, Any]], Any] | None = None
    reports: Callable[[TrialRecord], int] | None = None
    # a search's state for a resume: its Optuna trial by Tune trial id (kept on the trial's run),
    # and its sampler (pickled after each ended trial)
    trial_state: Callable[[str], dict[str, Any] | None] = lambda trial_id: None
    state: Callable[[], Any] | None = None


@dataclass
class JobRun:
    """What a job's ``finish`` receives: the records of every trial, in the order they started."""

    cfg: OptimizeConfig
    prep: Prepared
    tracker: Any
    parent: str
    records: list[TrialRecord]
    t_start: float

    def mlflow(self) -> dict[str, Any]:
        return {
            "tracking_uri": self.prep.uri,
            "experiment_id": self.tracker.experiment_id,
            "parent_run_id": self.parent,
        }

    def seconds(self) -> float:
        return round(time.perf_counter() - self.t_start, 1)

    def closing_lines(self, seconds: float) -> list[str]:
        from allocator.report.tracking import ui_command

        uri = self.prep.uri
        return [
            f"MLflow: {uri} (experiment {self.tracker.experiment_id}, parent run {self.parent})",
            f"  view: {ui_command(uri)}",
            f"done in {seconds:.0f}s",
        ]


class Job(ABC):
    """A kind of job on the runner (module doc)."""

    kind: str  # "optimize", "study" or "confirm": the parent run's name and kind tag
    resumed: Resumed | None = None  # set by the runner before ``trials``: what is left is the job's to plan

    def identity(self) -> dict[str, Any]:
        """What the job is beyond its config (a confirmation's mixtures and seeds): a resumed job
        has the same."""
        return {}

    def parent_tags(self) -> dict[str, str]:
        """The job's own tags on its parent run (what a resumed job reads back: ``resumed.tags``)."""
        return {}

    def check(self, pools: Pools) -> None:  # noqa: B027 (most jobs have nothing to check here)
        """User errors in the job's input that the pool can tell, before the base is built."""

    def check_cluster(self, cluster: dict[str, float]) -> None:  # noqa: B027 (most jobs need no more)
        """User errors the cluster's resources tell (``ray.cluster_resources()``), before MLflow."""

    def prepare_more(self, prep: Prepared, out: Callable[[str], None]) -> list[Prepared]:
        """What else the job prepares before anything is written (a confirmation's target: its
        pools, its base); the runner scores each base that is not scored yet on a worker."""
        return []

    @abstractmethod
    def trials(self, prep: Prepared) -> TrialPlan:
        """The trials to run (may raise ``UserError``: still nothing is written)."""

    @abstractmethod
    def finish(self, run: JobRun) -> Any:
        """The job's result from its records (the parent run ends FINISHED after this returns)."""


def _project_modules() -> list[Any]:
    """This project's packages, shipped to a joined cluster's workers."""
    import allocator
    import ray_cluster
    import trainers

    return [allocator, trainers, ray_cluster]


class _NoTuneRestoreHint(logging.Filter):
    """Tune's own "Resume experiment with: Tuner.restore(...)" is not for an allocator user:
    the runner prints the command that resumes the job."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


def run_job(
    cfg: OptimizeConfig,
    job: Job,
    out: Callable[[str], None],
    *,
    resume: str | None = None,
    command: str | None = None,
) -> Any:
    """Run ``job`` under ``cfg`` (module doc); ``out`` prints a line. ``resume`` is an
    interrupted job's parent run id, or ``allocator.trial.resume.LATEST``; ``command`` is how
    the user started the job (printed with ``--resume RUN_ID`` when it is interrupted)."""
    from ray import tune

    from allocator.report.tracking import ended_status, open_tracker
    from allocator.trial import resume as rs
    from allocator.trial.callback import TrialLog
    from allocator.trial.worker import run_trial
    from ray_cluster import ClusterError, check_address, connect, disconnect, max_concurrent_trials, trial_resources

    t_start = time.perf_counter()
    digest = rs.config_digest({**cfg.to_dict(), "job": job.identity()})
    if cfg.ray.address:  # an address that cannot be joined fails in seconds, before the base is built
        try:
            check_address(cfg.ray.address)
        except ClusterError as e:
            raise UserError(str(e)) from None

    def find(uri: str) -> None:  # once the store is known to answer, before the base is built
        if resume is not None:
            client = rs.open_store(uri)
            run = rs.find_job(client, cfg.tracking.experiment, job.kind, digest, resume, uri)
            job.resumed = rs.load_resumed(client, run)

    prep = prepare(cfg, out, job.check, find)
    resumed = job.resumed
    if resumed is not None:
        _check_same_base(resumed, prep)
        out(f"resuming {job.kind} {resumed.parent}: {len(resumed.ended)} trials kept, {len(resumed.running)} restart")
    more = job.prepare_more(prep, out)
    scored = all(p.base_scores is not None for p in (prep, *more))
    plan = job.trials(prep) if scored else None
    try:
        started_ray = connect(
            cfg.ray.address, cfg.ray.num_cpus, py_modules=_project_modules(), env_vars=WORKER_ENV, checked=True
        )
    except ClusterError as e:
        raise UserError(str(e)) from None
    tracker = None
    parent = None
    resume_with = None  # the command that resumes the job, once its parent run exists
    try:
        import ray

        r = cfg.resources
        try:
            conc = max_concurrent_trials(
                ray.cluster_resources(), r.cpus_per_trial, r.gpus_per_trial, cfg.search.max_concurrent_trials
            )
        except ClusterError as e:
            raise UserError(str(e)) from None
        job.check_cluster(ray.cluster_resources())
        if plan is None:  # scored where trials run (a pretrained base, or GPU trials), then planned
            for p in (prep, *more):
                if p.base_scores is None:
                    p.set_base_scores(_score_base_on_worker(p), out)
            plan = job.trials(prep)
        tracker = open_tracker(prep.uri, cfg.tracking.experiment)
        if resumed is None:
            parent, run_name = _open_parent(tracker, prep, job.kind, {rs.CONFIG_TAG: digest, **job.parent_tags()})
            storage = Path(cfg.storage_path).resolve() / f"{run_name}-{parent[:8]}"
            tracker.set_tag(parent, rs.STORAGE_TAG, str(storage))
            name = storage.name
        else:
            parent, run_name, storage = resumed.parent, resumed.run_name, resumed.storage
            n = resumed.resumes + 1
            tracker.reopen_parent(parent, {rs.DRIVER_TAG: rs.driver_tag(), rs.RESUMES_TAG: str(n)})
            name = f"{storage.name}-resume{n}"
        resume_with = f"{command or f'allocator {job.kind} ...'} --resume {parent}"
        out(plan.announce(conc))
        out(f"  parent run {parent}; if this stops, resume it with: {resume_with}")
        pools = prep.pools
        reports = plan.reports or (lambda rec: cfg.proxy.reports)
        state = plan.state
        tracker_ = tracker

        def changed() -> None:  # the search's sampler after each trial's start and end, named on the parent
            if state is not None:
                rs.save_state(storage, state(), lambda tag: tracker_.set_tag(parent, rs.STATE_TAG, tag))

        log = TrialLog(
            tracker,
            pools.abilities,
            pools.data_hash,
            plan.opener,
            plan.line,
            out,
            reports,
            resumed=resumed,
            trial_state=plan.trial_state,
            on_change=changed,
        )
        trainable = tune.with_resources(
            plan.trainable or tune.with_parameters(run_trial, setup=plan.setup),
            plan.resources or trial_resources(r.cpus_per_trial, r.gpus_per_trial),
        )
        tuner = tune.Tuner(
            trainable,
            param_space=plan.param_space,
            tune_config=tune.TuneConfig(
                search_alg=plan.search_alg,
                scheduler=plan.scheduler,
                num_samples=plan.num_samples,
                max_concurrent_trials=conc,
                # one worker process for many trials: torch, transformers and peft are imported
                # once per worker, not once per trial (5 s a trial on 2 cores); the numbers are the same
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage.parent),
                callbacks=[log],
                # a retry restarts the trial from scratch (trials keep no checkpoint): the same Tune
                # trial, so one Optuna trial and one MLflow run (allocator.trial.callback)
                failure_config=tune.FailureConfig(max_failures=r.max_failures),
                verbose=0,
            ),
        )
        # Ctrl-C during fit() goes to Tune's own SIGINT handler, which only sets a flag: the loop
        # ends between steps, stops the trial actors and returns. A KeyboardInterrupt raised at an
        # arbitrary point inside Tune's loop instead (TUNE_DISABLE_SIGINT_HANDLER=1) was measured
        # to be lost now and then (the run went on to exit 0) or to leave the process hanging at exit.
        hint = _NoTuneRestoreHint()
        logging.getLogger("ray.tune.tune").addFilter(hint)
        try:
            if log.ended < plan.trials:  # (a resumed job may have only its end left)
                tuner.fit()
        finally:
            logging.getLogger("ray.tune.tune").removeFilter(hint)
        # (a kept trial that was to restart and never did is no record of this run)
        records = [rec for rec in log.records.values() if rec.status is not Status.PENDING]
        ended_recs = [rec for rec in records if rec.status.ended]
        if len(ended_recs) < plan.trials:
            # Tune stops early only when interrupted (its SIGINT handler returns from fit()):
            # the job is incomplete, and must not be reported as finished
            raise KeyboardInterrupt(f"the {job.kind} stopped after {len(ended_recs)} of {plan.trials} trials")
        result = job.finish(JobRun(cfg, prep, tracker, parent, records, t_start))
        tracker.close("FINISHED")
        return result
    except BaseException as e:
        if tracker is not None:
            status = ended_status(e)
            tracker.close(status)
            if status == "KILLED" and resume_with is not None:
                out(f"interrupted: resume with {resume_with}")
        raise
    finally:
        disconnect(started_ray)


def _check_same_base(resumed: Resumed, prep: Prepared) -> None:
    """A resumed job's trials train from the base its kept trials trained from."""
    tags = resumed.tags  # (the parent run's, as find_job read them)
    if tags.get("allocator.base_digest") != prep.base.meta["digest"]:
        raise UserError(
            f"--resume {resumed.parent}: the base model is not the one the job trained from "
            f"(digest {prep.base.meta['digest']}, the job's {tags.get('allocator.base_digest')})"
        )


def _score_base_on_worker(prep: Prepared) -> dict[str, dict[str, float]]:
    """The untrained base's scores from one Ray task with a trial's resources: the worker loads
    the model itself, as a trial does (a CPU head node cannot evaluate a 7B model). A user error
    on the worker (the model folder not visible there, say) is a user error here."""
    import ray

    from allocator.trial.worker import score_base

    r = prep.cfg.resources
    task = ray.remote(score_base).options(num_cpus=r.cpus_per_trial, num_gpus=r.gpus_per_trial, max_retries=0)
    try:
        return ray.get(task.remote(prep.base_job()))
    except ray.exceptions.RayTaskError as e:
        import torch

        from trainers.errors import TrainerError

        if isinstance(e.cause, TrainerError):
            raise UserError(f"scoring the base on a worker: {e.cause}") from None
        if isinstance(e.cause, torch.OutOfMemoryError):
            raise UserError(
                f"scoring the base on a worker: out of GPU memory with resources.gpus_per_trial "
                f"{r.gpus_per_trial} (raise it, use proxy.kind qlora, or lower proxy.batch_size)"
            ) from None
        raise
    except ray.exceptions.OutOfMemoryError:
        raise UserError(
            "scoring the base on a worker: the node ran out of memory loading the model (raise "
            "resources.cpus_per_trial to give a trial more of a node, or use proxy.kind qlora)"
        ) from None


def _open_parent(tracker: Any, prep: Prepared, kind: str, more: dict[str, str]) -> tuple[str, str]:
    """Start a job's MLflow parent run (config, pool summary, the base's raw scores, its
    driver and the ``more`` tags); returns ``(run id, run name)``."""
    from allocator.trial.resume import DRIVER_TAG, driver_tag

    run_name = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    tags = {"allocator.base_digest": prep.base.meta["digest"], DRIVER_TAG: driver_tag(), **more}
    if prep.spec.name_or_path is not None:  # a pretrained base: which model, at which commit
        tags["allocator.base_model"] = prep.spec.name_or_path
        if prep.spec.revision:
            tags["allocator.base_commit"] = prep.spec.revision
    parent = tracker.start_parent(run_name, prep.cfg.to_dict(), tags, kind=kind)
    tracker.log_json(parent, prep.pools.summary, "pool.json")
    base = {f"base_{m}/{ability_key(a)}": v for a, s in prep.base_scores.items() for m, v in s.items()}
    tracker.log_metrics(parent, base, step=0)
    return parent, run_name
