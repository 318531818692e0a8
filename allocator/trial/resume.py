"""Resuming an interrupted job (``--resume [RUN_ID]``) from what its MLflow runs kept.

What a job keeps as it runs, so that a later driver can take it up (allocator.trial.runner
and callback write it):

- on its parent run: the digest of its config (``allocator.config_digest``), the folder it
  writes (``allocator.storage``), its driver (``allocator.driver``: host and pid), and, for a
  search, its sampler's state: a pickle in that folder, written after every trial's start and end, whose
  SHA-256 the tag ``allocator.sampler_state`` holds;
- on each trial's child run: ``point.json``, the trial's Tune config exactly (logged when it
  starts), and ``record.json``, its record and its Optuna trial (logged before it ends).

Resuming keeps every trial MLflow has as ended (FINISHED or FAILED, with its ``record.json``)
and never runs it again; a trial that was running restarts from scratch in its own child
run (one more attempt: trials keep no checkpoint); a search's Optuna study is rebuilt from
the ended trials (TPE's history and the growth sampler's cycle are in them) and its sampler
unpickled only once its digest matches the one MLflow holds; the job's trial budget counts
the trials kept. The store, not a path the user types, says where the job's folder is.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from allocator.errors import UserError
from allocator.trial.record import Status, TrialRecord

__all__ = [
    "CONFIG_TAG",
    "DRIVER_TAG",
    "LATEST",
    "RESUMES_TAG",
    "STATE_TAG",
    "STORAGE_TAG",
    "Resumed",
    "config_digest",
    "driver_tag",
    "find_job",
    "load_resumed",
    "load_state",
    "open_store",
    "point_key",
    "record_from_json",
    "record_json",
    "save_state",
]

CONFIG_TAG = "allocator.config_digest"
STORAGE_TAG = "allocator.storage"
DRIVER_TAG = "allocator.driver"
STATE_TAG = "allocator.sampler_state"
RESUMES_TAG = "allocator.resumes"
LATEST = "latest"  # --resume without a run id: the latest interrupted job of this config


def config_digest(config: dict[str, Any]) -> str:
    """What a resumed job must share with the job it resumes: its whole config but where Ray
    runs (``ray``: another cluster computes the same trials) and how the store is reached
    (``tracking.uri``: the job is looked up in the store it is given)."""
    kept = {k: v for k, v in config.items() if k != "ray"}
    if isinstance(kept.get("tracking"), dict):
        kept["tracking"] = {k: v for k, v in kept["tracking"].items() if k != "uri"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def point_key(config: dict[str, Any]) -> str:
    """A trial's Tune config as a key: the same point is the same trial."""
    return json.dumps(config, sort_keys=True)


def driver_tag() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def record_json(rec: TrialRecord, optuna: dict[str, Any] | None) -> dict[str, Any]:
    """What a child run keeps of its trial when it ends: every field of its record, and its
    Optuna trial (params, values, state, attributes) for a search."""
    out = {f.name: getattr(rec, f.name) for f in fields(rec)}
    out["status"] = str(rec.status)
    return {"record": out, "optuna": optuna}


def record_from_json(d: dict[str, Any]) -> TrialRecord:
    known = {f.name for f in fields(TrialRecord)}
    rec = TrialRecord(**{k: v for k, v in d.items() if k in known})
    rec.status = Status(rec.status)
    return rec


@dataclass
class Resumed:
    """An interrupted job, as its MLflow runs kept it (module doc)."""

    parent: str  # the parent run's id
    run_name: str
    storage: Path  # the job's folder (the store's tag)
    records: list[TrialRecord]  # every trial that started, in the order they started
    running: dict[str, TrialRecord]  # point key -> a trial that was running: it restarts in its run
    optuna: list[dict[str, Any]]  # the ended trials' Optuna trials, in their study's order
    state: Any = None  # the search's sampler, unpickled after its digest was checked
    resumes: int = 0  # how often the job was resumed before
    points: dict[str, TrialRecord] = field(default_factory=dict)  # point key -> every trial kept
    tags: dict[str, str] = field(default_factory=dict)  # the parent run's

    @property
    def ended(self) -> list[TrialRecord]:
        return [r for r in self.records if r.status.ended]


def _alive(tag: str | None) -> str | None:
    """The driver a tag names, if it is a live process on this host."""
    host, _, pid = (tag or "").partition(" ")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return f"pid {pid} on this host"


def open_store(uri: str) -> Any:
    """An MLflow client of the store a job to resume is in; a SQLite store that does not exist
    is a ``UserError`` (MLflow's client would create it)."""
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(f"--resume: there is no store at {uri.removeprefix('sqlite:///')}: nothing to resume")
    return MlflowClient(tracking_uri=uri)


def find_job(client: Any, experiment: str, kind: str, digest: str, run_id: str, uri: str) -> Any:
    """The parent run to resume: ``run_id``, or the latest interrupted ``kind`` job whose config
    has ``digest`` (``LATEST``); anything else is a ``UserError`` before anything is written."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise UserError(f"--resume: the store {uri} has no experiment {experiment!r}: nothing to resume")
    if run_id == LATEST:
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`allocator.kind` = '{kind}' and tags.`{CONFIG_TAG}` = '{digest}'",
            order_by=["attributes.start_time DESC"],
            max_results=50,
        )
        for run in runs:
            driver = run.data.tags.get(DRIVER_TAG, "")
            # a RUNNING job whose driver is on another host may be alive: only its RUN_ID resumes it
            here = driver.partition(" ")[0] == socket.gethostname()
            if run.info.status == "KILLED" or (run.info.status == "RUNNING" and here and not _alive(driver)):
                return run
        raise UserError(
            f"--resume: no interrupted {kind} job with this config in {uri} (experiment {experiment!r}); "
            "give a RUN_ID, or run without --resume"
        )
    try:
        run = client.get_run(run_id)
    except Exception:
        raise UserError(f"--resume {run_id}: no such run in {uri}") from None
    tags = run.data.tags
    if (
        run.info.experiment_id != exp.experiment_id
        or tags.get("allocator.kind") != kind
        or "mlflow.parentRunId" in tags
    ):
        raise UserError(f"--resume {run_id}: not an {kind} job of experiment {experiment!r} in {uri}")
    if STORAGE_TAG not in tags:
        raise UserError(f"--resume {run_id}: the job was started by an allocator that could not resume it")
    if run.info.status == "FINISHED":
        raise UserError(f"--resume {run_id}: the job finished; there is nothing to resume")
    if run.info.status == "RUNNING" and (live := _alive(tags.get(DRIVER_TAG))):
        raise UserError(f"--resume {run_id}: the job is still running ({live})")
    if tags.get(CONFIG_TAG) != digest:
        raise UserError(
            f"--resume {run_id}: the job ran another config (its config.json in MLflow); "
            "resume it with the same config and flags"
        )
    return run


def load_resumed(client: Any, run: Any) -> Resumed:
    """What ``run``'s job kept (module doc): its trials from its child runs, its sampler's state."""
    parent, tags = run.info.run_id, run.data.tags
    storage = Path(tags[STORAGE_TAG])
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
        order_by=["attributes.start_time ASC"],
        max_results=50_000,
    )
    records, running, optuna, points = [], {}, [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for child in children:
            cid = child.info.run_id
            names = {a.path for a in client.list_artifacts(cid)}
            if "point.json" not in names:
                continue  # opened but never given its point: it never ran (a crash in between)
            point = point_key(_load(client, cid, "point.json", tmp))
            kept = _load(client, cid, "record.json", tmp) if "record.json" in names else None
            if kept is not None and child.info.status in ("FINISHED", "FAILED"):
                rec = record_from_json(kept["record"])
                if kept.get("optuna"):
                    optuna.append(kept["optuna"])
            else:  # running when the driver stopped: it restarts from scratch in this run
                rec = TrialRecord(
                    child.data.tags.get("allocator.trial_id", ""),
                    child.info.run_name,
                    child.data.tags.get("allocator.kind", ""),
                    {},
                    mlflow_run_id=cid,
                    attempts=int(child.data.tags.get("allocator.attempts", "1")) - 1,
                    origin=child.data.params.get("origin"),
                )
                running[point] = rec
            records.append(rec)
            points[point] = rec
    optuna.sort(key=lambda t: t["number"])
    state = load_state(storage, tags.get(STATE_TAG), parent)
    return Resumed(
        parent,
        run.info.run_name,
        storage,
        records,
        running,
        optuna,
        state,
        int(tags.get(RESUMES_TAG, "0")),
        points,
        dict(tags),
    )


def _load(client: Any, run_id: str, name: str, tmp: str) -> Any:
    path = client.download_artifacts(run_id, name, tmp)
    return json.loads(Path(path).read_text())


def save_state(storage: Path, state: Any, record: Callable[[str], None]) -> None:
    """Pickle a search's sampler into the job's folder (``state-<ns>.pkl``, written whole before
    it is named), ``record`` the tag that names it with its SHA-256, then drop the older states
    (only once the store names the new one: a crash in between leaves the old one usable)."""
    folder = storage / "allocator-state"
    folder.mkdir(parents=True, exist_ok=True)
    data = pickle.dumps(state)
    name = f"state-{time.time_ns()}.pkl"
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, folder / name)
    record(f"{name} sha256:{hashlib.sha256(data).hexdigest()}")
    for old in folder.glob("state-*.pkl"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_state(storage: Path, tag: str | None, parent: str) -> Any:
    """The sampler a job pickled, unpickled only when its bytes have the digest its MLflow
    run recorded: the store vouches for the file, never the file for itself."""
    if not tag:
        return None
    name, _, digest = tag.partition(" sha256:")
    path = storage / "allocator-state" / name
    if not path.is_file():
        raise UserError(f"--resume {parent}: its sampler's state {path} is missing (the folder moved?)")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise UserError(f"--resume {parent}: {path} is not the file the job wrote (its SHA-256 differs); not loaded")
    return pickle.loads(data)
