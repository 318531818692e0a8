"""What the driver knows of one trial (one proxy run): its mixture, status and scores.

One record for every job: a searched or baseline trial of ``optimize``, a grid run of
``study`` or ``confirm``. The result files keep each job's fields as they always were
(``to_dict``): a search's trials with how they were chosen and how far they trained, a
grid's runs with their design, ability, volume and seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from allocator.data.labels import ability_key

__all__ = ["Status", "TrialRecord"]


class Status(StrEnum):
    """A trial's status; a string, so the result files and comparisons read as text."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    EARLY_STOPPED = "EARLY_STOPPED"  # the scheduler stopped it: its scores are partial

    @property
    def ended(self) -> bool:
        return self in (Status.FINISHED, Status.FAILED, Status.EARLY_STOPPED)

    @property
    def mlflow(self) -> str:
        """Its MLflow run status: an early-stopped trial ran fine (FINISHED, and tagged)."""
        return "FINISHED" if self is Status.EARLY_STOPPED else self.value


# the fields each job's result file holds, in order
_COMMON = ("name", "mixture", "status", "objective", "scores", "exact_match", "choice", "losses", "data_hash")
SEARCH_FIELDS = (
    "trial_id",
    *_COMMON[:1],
    "kind",
    *_COMMON[1:],
    "origin",
    "steps",
    "steps_total",
    "evaluations",
    "violations",
    "predicted",
    "seconds",
    "mlflow_run_id",
    "error",
    "attempts",
)
GRID_FIELDS = (
    *("name", "design", "ability", "volume", "seed", *_COMMON[1:]),
    *("mlflow_run_id", "error", "seconds", "attempts"),
)


@dataclass
class TrialRecord:
    trial_id: str  # Ray Tune's
    name: str
    kind: str  # "baseline" or "search" (optimize); "study-joint", "study-isolated" or "confirm"
    mixture: dict[str, int]
    status: Status = Status.PENDING
    objective: float | None = None
    scores: dict[str, float] = field(default_factory=dict)  # normalized score per ability (allocator.curves.scoring)
    exact_match: dict[str, float] = field(default_factory=dict)  # abilities scored by exact match
    choice: dict[str, float] = field(default_factory=dict)  # multiple-choice accuracy of abilities scored so
    losses: dict[str, float] = field(default_factory=dict)  # held-out response loss per ability
    data_hash: str | None = None  # content hash of the exact training examples
    steps: int | None = None  # optimizer steps trained when last evaluated
    steps_total: int | None = None  # the steps of the whole run (more than steps: stopped early)
    evaluations: int = 0  # evaluations reported (fewer than proxy.reports: stopped early by the scheduler)
    seconds: float | None = None
    mlflow_run_id: str | None = None
    error: str | None = None
    attempts: int = 0  # failed attempts Tune retried (resources.max_failures)
    # a search's trial: how it was chosen, and what the growth-curve model predicted for it
    origin: str | None = None  # baseline, warm start, or the sampler (its model)
    predicted: float | None = None
    violations: list[str] = field(default_factory=list)  # abilities below the floor (search.floor)
    # a grid's run (study, confirm): where it sits in the grid
    design: str | None = None  # "joint", "isolated" or "confirm"
    ability: str | None = None  # the trained ability of an isolated run
    volume: int | None = None  # the grid's volume (each count is this, capped by its pool)
    seed: int | None = None  # its training seed

    @property
    def grid(self) -> bool:
        return self.design is not None

    def update(self, result: dict[str, Any], abilities: list[str]) -> None:
        """Take one evaluation a trial reported (allocator.trial.worker's metrics)."""
        self.objective = float(result["objective"])
        self.steps, self.evaluations = int(result["step"]), self.evaluations + 1
        self.steps_total = int(result["steps_total"])
        key = {a: ability_key(a) for a in abilities}
        self.scores = {a: float(result[f"score/{key[a]}"]) for a in abilities}
        self.losses = {a: float(result[f"loss/{key[a]}"]) for a in abilities}
        self.exact_match = {a: float(result[k]) for a in abilities if (k := f"exact_match/{key[a]}") in result}
        self.choice = {a: float(result[k]) for a in abilities if (k := f"choice/{key[a]}") in result}

    def to_dict(self) -> dict[str, Any]:
        """The record as its job's result file holds it."""
        out = {k: getattr(self, k) for k in (GRID_FIELDS if self.grid else SEARCH_FIELDS)}
        out["status"] = str(self.status)
        return out
