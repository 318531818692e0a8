"""MLflow tracking: one parent run per job, one child run per trial.

Everything goes through an explicit ``MlflowClient`` from the driver process:
trials never write to the store themselves, so a SQLite store has one writer per job.
Jobs that start at once into one new SQLite store would each create its tables (MLflow's
migrations race: "table _alembic_tmp_experiments already exists"): creating the store and
the experiment holds a lock on the store's folder. The fluent API is avoided on purpose: at interpreter exit it marks an
unfinished run FINISHED even after a crash, and a run's status must tell the
truth (FAILED is FAILED, an interrupted run is KILLED).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from allocator.data.labels import ability_key
from allocator.errors import UserError, first_line

__all__ = ["Tracker", "check_names", "default_tracking_uri", "ended_status", "open_tracker", "ui_command"]

TRIAL_ID_TAG = "allocator.trial_id"
KIND_TAG = "allocator.kind"


def ended_status(e: BaseException) -> str:
    """The status of a run that ``e`` ended: KILLED when it was stopped from outside
    (Ctrl-C; SIGTERM, which Ray's driver turns into ``sys.exit(15)``), else FAILED
    (another ``sys.exit`` in the driver is a failure)."""
    terminated = isinstance(e, SystemExit) and e.code == signal.SIGTERM
    return "KILLED" if isinstance(e, KeyboardInterrupt) or terminated else "FAILED"


def default_tracking_uri() -> str:
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _artifact_root(uri: str) -> str | None:
    # next to a SQLite file; a tracking server decides for itself
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts")
    return None


def ui_command(uri: str) -> str:
    root = _artifact_root(uri)
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    art = f" --default-artifact-root {root}" if root else ""
    return f"mlflow ui --backend-store-uri {uri}{art} --host 127.0.0.1 --port 5000"


def check_uri(uri: str) -> None:
    """Reject a tracking URI we cannot use before anything is written."""
    if uri.startswith("sqlite:///"):
        parent = Path(uri.removeprefix("sqlite:///")).parent
        if not parent.is_dir():
            raise UserError(f"--tracking-uri {uri}: folder {parent} does not exist")
    elif uri.startswith(("http://", "https://")):
        _check_server(uri)
    elif not uri.startswith(("postgresql", "mysql", "mssql")):
        raise UserError(
            f"--tracking-uri {uri}: expected sqlite:///PATH/mlflow.db, http(s)://HOST:PORT or a database URI"
        )


# what a job logs per ability (allocator.trial.worker, runner, search, confirm): a prefix of each
_ABILITY_METRICS = ("score/", "loss/", "exact_match/", "choice/", "best_score/", "base_exact_match/", "base_loss/")
_ABILITY_METRICS += ("base_choice/", "proxy/score/", "target/score/")


def check_names(config: dict[str, Any], abilities: list[str]) -> None:
    """Every name a job will log that MLflow would refuse, as a ``UserError`` before the first
    run is created: the config's params, the per-ability metrics and params (an ability's key,
    allocator.data.labels). MLflow itself checks only as each is logged, after the parent run
    exists. (The experiment's name is the config's to check: tracking.experiment.)"""
    from allocator.search.extensions import mlflow_name_problem

    names = [("param", k, f"config field {k}") for k in _flatten(config)]
    for a in abilities:
        k = ability_key(a)
        names.append(("param", f"mixture.{k}", f"ability {a!r}"))
        names.extend(("metric", f"{prefix}{k}", f"ability {a!r}") for prefix in _ABILITY_METRICS)
    for kind, name, what in names:
        problem = mlflow_name_problem(kind, name)
        if problem:
            raise UserError(f"{what}: MLflow would refuse its {kind} name {name!r}: {problem}")


SERVER_SECONDS = 5.0


def _check_server(uri: str) -> None:
    """A tracking server that answers its health check, or a ``UserError`` within seconds:
    MLflow's client retries a request for minutes (7 tries, exponential backoff) and the job
    would find out only after its base is built and Ray is up."""
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=SERVER_SECONDS) as r:
            r.read(64)
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):  # a server behind authentication answers; MLflow's client sends the credentials
            return
        raise UserError(f"--tracking-uri {uri}: {url} answered HTTP {e.code}; is this an MLflow server?") from None
    except TimeoutError:
        raise UserError(f"--tracking-uri {uri}: no answer within {SERVER_SECONDS:g}s") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, TimeoutError):
            raise UserError(f"--tracking-uri {uri}: no answer within {SERVER_SECONDS:g}s") from None
        raise UserError(f"--tracking-uri {uri}: no MLflow server answers ({first_line(reason)})") from None


def open_tracker(uri: str, experiment: str) -> Tracker:
    """A ``Tracker``; a store that cannot be reached or opened is a ``UserError``."""
    try:
        return Tracker(uri, experiment)
    except UserError:
        raise
    except Exception as e:  # an unreachable server or a database we cannot open
        raise UserError(f"tracking URI {uri}: {first_line(e)}") from None


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock on a SQLite store's folder (a lock on the folder itself: no file is
    written for it); nothing for another store, whose server or database serializes."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    fd = os.open(Path(uri.removeprefix("sqlite:///")).parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # (releases the lock)


class Tracker:
    """The parent run of one optimization and the child runs of its trials."""

    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow import MlflowClient

        self.uri, self.experiment_name = uri, experiment
        with _store_lock(uri):  # (module doc)
            self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                exp = self.client.get_experiment(
                    self.client.create_experiment(experiment, artifact_location=_artifact_root(uri))
                )
        if exp.lifecycle_stage == "deleted":
            raise UserError(
                f"tracking: experiment {experiment!r} is deleted in {uri}; restore it in MLflow or choose another name"
            )
        self.experiment_id = exp.experiment_id
        self.parent_run_id: str | None = None
        self.child_runs: dict[str, str] = {}  # trial id -> run id
        self.open_children: set[str] = set()

    def start_parent(self, name: str, config: dict[str, Any], tags: dict[str, str], kind: str = "optimize") -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={KIND_TAG: kind, **tags})
        self.parent_run_id = run.info.run_id
        self.client.log_dict(self.parent_run_id, config, "config.json")
        flat = _flatten(config)
        self.log_params(self.parent_run_id, flat)
        return self.parent_run_id

    def start_child(self, trial_id: str, name: str, kind: str, params: dict[str, Any]) -> str:
        assert self.parent_run_id is not None
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={"mlflow.parentRunId": self.parent_run_id, TRIAL_ID_TAG: trial_id, KIND_TAG: kind},
        )
        run_id = run.info.run_id
        self.child_runs[trial_id] = run_id
        self.open_children.add(run_id)
        self.log_params(run_id, params)
        return run_id

    def reopen_parent(self, run_id: str, tags: dict[str, str]) -> None:
        """Take up an interrupted job's parent run again (allocator.trial.resume): RUNNING."""
        self.parent_run_id = run_id
        self.client.update_run(run_id, status="RUNNING")
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)

    def reopen_child(self, run_id: str, trial_id: str, attempts: int) -> None:
        """A trial that was running when its driver stopped restarts in its own run, RUNNING
        again: its ``attempts``-th attempt is the one the driver's end cut off."""
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, TRIAL_ID_TAG, trial_id)
        self.client.set_tag(run_id, f"allocator.attempt_{attempts}.error", "its driver stopped; restarted by --resume")
        self.client.set_tag(run_id, "allocator.attempts", str(attempts + 1))
        self.child_runs[trial_id] = run_id
        self.open_children.add(run_id)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 900):  # MLflow caps a batch at 1000 metrics
            self.client.log_batch(run_id, metrics=batch[i : i + 900])

    def end(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)
        self.open_children.discard(run_id)

    def log_json(self, run_id: str, obj: Any, name: str) -> None:
        self.client.log_dict(run_id, obj, name)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def log_figure(self, run_id: str, figure: Any, name: str) -> None:
        self.client.log_figure(run_id, figure, name)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.client.set_tag(run_id, key, value)

    def close(self, status: str) -> None:
        """End the parent with ``status``; a trial still open never finished: KILLED."""
        for run_id in list(self.open_children):
            self.end(run_id, "KILLED")
        if self.parent_run_id is not None:
            self.client.set_terminated(self.parent_run_id, status=status)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 90):  # MLflow caps a batch at 100 params
            self.client.log_batch(run_id, params=items[i : i + 90])


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    # a key may be an ability's label (data.metrics, search.minimum): its MLflow-safe key
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{ability_key(str(k))}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out
