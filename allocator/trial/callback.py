"""The one Tune callback: on the driver, trial events become MLflow runs and trial records.

The driver alone writes to MLflow, from this callback, as results arrive: a trial's child
run opens when it starts, gets its metrics at each evaluation, and ends with its true status
the moment it ends, whatever happens to the driver afterwards (tests/test_crash.py kills
it). Tune's own copy under ``storage_path`` is synced later and may lag behind a crash.
Which trial is which (its name, kind, mixture, the job's own MLflow params) and the line
printed when it ends are the job's: ``TrialLog`` takes them as two functions. Every child run
holds its counts (``mixture.<ability>``) and the content hash of its training examples
(``data_hash``), and what a resumed job needs (allocator.trial.resume): its Tune config
(``point.json``) from its start, its record (``record.json``) from before it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune

from allocator.data.labels import ability_key
from allocator.report.tracking import Tracker
from allocator.trial.record import Status, TrialRecord
from allocator.trial.resume import Resumed, point_key, record_json

__all__ = ["Opener", "TrialLog", "trial_error_line"]

# a Tune trial -> its record (name, kind, mixture, and for a search its origin) and the job's own MLflow params
Opener = Callable[[Any], tuple[TrialRecord, dict[str, Any]]]
# the metric names a trial reports: per ability, and its speed
_LOGGED = ("score/", "exact_match/", "choice/", "loss/", "perf/")


def trial_error_line(trial: Any) -> str:
    """The last line of a failed trial's traceback, which names the exception."""
    # Tune writes the worker's traceback to the trial's local error file before
    # calling back; the copy in storage (trial.get_error) may not be synced yet
    path = trial.error_file
    text = Path(path).read_text(errors="replace").strip() if path and Path(path).is_file() else ""
    return text.splitlines()[-1].strip() if text else "the trial raised an error (see Ray's logs)"


class TrialLog(tune.Callback):
    """Driver side: one MLflow child run per trial, one printed line per ended trial.
    ``data_hash`` hashes the examples a mixture trains on; ``reports(record)`` is how many
    evaluations a trial that ran to its end reports: a trial that ended with fewer was stopped
    early by the scheduler."""

    def __init__(
        self,
        tracker: Tracker,
        abilities: list[str],
        data_hash: Callable[[dict[str, int]], str],
        opener: Opener,
        line: Callable[[TrialRecord, int], str],
        printer: Callable[[str], None],
        reports: Callable[[TrialRecord], int],
        *,
        resumed: Resumed | None = None,
        trial_state: Callable[[str], dict[str, Any] | None] = lambda trial_id: None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.tracker, self.abilities, self.opener, self.line = tracker, abilities, opener, line
        self.data_hash = data_hash
        self.printer, self.reports = printer, reports
        # a search's Optuna trial; called after each trial starts or ends (the sampler's state is saved)
        self.trial_state, self.on_change = trial_state, on_change
        # by Tune trial id, in the order trials started (a resumed job's first: its kept trials)
        self.records: dict[str, TrialRecord] = {r.trial_id: r for r in resumed.records} if resumed else {}
        self.rerun = dict(resumed.running) if resumed else {}  # point key -> a trial to restart in its run
        self.started: dict[str, float] = {}
        self.ended = len(resumed.ended) if resumed else 0

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment folder (tuner.pkl, for Tuner.restore,
        # which allocator does not use: --resume reads MLflow). What this one holds is the
        # driver's only (the MLflow client, the job's functions, a caller's printer, which may
        # hold a lock): none of it goes there
        return {}

    def _open(self, trial: Any) -> TrialRecord:
        if trial.trial_id in self.records:
            return self.records[trial.trial_id]
        rec, own = self.opener(trial)
        # the opener may know better (a target's own tokenizer may keep other examples)
        rec.status, rec.data_hash = Status.RUNNING, rec.data_hash or self.data_hash(rec.mixture)
        old = self.rerun.pop(point_key(trial.config), None)
        if old is not None:  # it was running when the driver stopped: its run goes on, one attempt more
            assert old.mlflow_run_id is not None
            rec.mlflow_run_id, rec.attempts = old.mlflow_run_id, old.attempts + 1
            self.tracker.reopen_child(rec.mlflow_run_id, trial.trial_id, rec.attempts)
            # in its place among the trials, under its new Tune id
            self.records = {(trial.trial_id if k == old.trial_id else k): v for k, v in self.records.items()}
        else:
            mix = {f"mixture.{ability_key(a)}": n for a, n in rec.mixture.items()}
            rec.mlflow_run_id = self.tracker.start_child(
                trial.trial_id, rec.name, rec.kind, {**mix, **own, "data_hash": rec.data_hash}
            )
            self.tracker.log_json(rec.mlflow_run_id, trial.config, "point.json")
        self.records[trial.trial_id] = rec
        self.started[trial.trial_id] = time.perf_counter()
        self.on_change()  # (its point was drawn: a resumed sampler must not draw it again)
        return rec

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._open(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        rec = self._open(trial)
        assert rec.mlflow_run_id is not None
        metrics = {k: v for k, v in result.items() if k == "objective" or k.startswith(_LOGGED)}
        self.tracker.log_metrics(rec.mlflow_run_id, metrics, step=int(result["step"]))
        rec.update(result, self.abilities)

    def _finish(self, trial: Any, status: Status, error: str | None = None) -> None:
        rec = self._open(trial)  # a trial can fail before it ever started (e.g. its runtime_env)
        rec.status, rec.error = status, error
        rec.seconds = round(time.perf_counter() - self.started[trial.trial_id], 1)
        assert rec.mlflow_run_id is not None
        if error:
            self.tracker.set_tag(rec.mlflow_run_id, "allocator.error", error[:5000])
        if status is Status.EARLY_STOPPED:
            self.tracker.set_tag(rec.mlflow_run_id, "allocator.early_stopped", "true")
        # before it ends: an ended run always has it (a resumed job keeps the trial as it was)
        self.tracker.log_json(rec.mlflow_run_id, record_json(rec, self.trial_state(trial.trial_id)), "record.json")
        self.tracker.end(rec.mlflow_run_id, status.mlflow)
        self.ended += 1
        self.printer(self.line(rec, self.ended))
        self.on_change()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        rec = self._open(trial)
        if rec.objective is None:
            self._finish(trial, Status.FAILED)
        elif rec.evaluations < self.reports(rec):  # the scheduler stopped it: its objective is partial
            self._finish(trial, Status.EARLY_STOPPED)
        else:
            self._finish(trial, Status.FINISHED)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A failed attempt Tune retries (resources.max_failures): the same run goes on, with
        the attempt's error as ``allocator.attempt_<n>.error`` and ``allocator.attempts``."""
        rec = self._open(trial)
        assert rec.mlflow_run_id is not None
        rec.attempts += 1
        error = trial_error_line(trial)  # read from the trial's error file once
        self.tracker.set_tag(rec.mlflow_run_id, f"allocator.attempt_{rec.attempts}.error", error[:5000])
        self.tracker.set_tag(rec.mlflow_run_id, "allocator.attempts", str(rec.attempts + 1))
        rec.evaluations = 0  # the retry starts from scratch: its evaluations are counted anew
        self.printer(f"  {rec.name} failed (attempt {rec.attempts}), retried: {error}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, Status.FAILED, trial_error_line(trial))
