"""What crosses the Ray boundary: the one object every trial of a job receives.

Built once on the driver (``Prepared.trial_setup``), shipped through Ray's object store
(``tune.with_parameters``), read by the worker body (allocator.trial.worker). A trial's
own parameters only say where in it the trial sits: a point of the mixture space for a
search, a run's index for a fixed grid (study, confirm).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from allocator.data.labels import param_name
from allocator.mixture.plan import BudgetPlan
from trainers.config import ProxyRecipe
from trainers.evaluation import HeldoutItem
from trainers.models import ModelRef

__all__ = ["GridRun", "TrialSetup", "mixture_of", "point_of"]


@dataclass(frozen=True)
class GridRun:
    """One run of a fixed grid: its mixture and training seed."""

    mixture: dict[str, int]
    seed: int


def point_of(params: Mapping[str, Any], abilities: list[str]) -> dict[str, float]:
    """The point of the mixture space a search trial's parameters name."""
    return {a: float(params[param_name(a)]) for a in abilities}


@dataclass(frozen=True)
class TrialSetup:
    """A job's trials' common ground: the base to fine-tune, the data, the recipe, how to
    score, and where each trial's mixture comes from (``plan`` for a search, ``runs`` for a
    grid)."""

    base: ModelRef
    tokenizer: dict[str, Any]  # trainers.tokenizer spec (JSON-able, never a pickle of a tokenizer)
    recipe: ProxyRecipe
    train: dict[str, list[tuple[list[int], list[int]]]]  # per ability: the reachable prefix of its order
    heldout: dict[str, list[HeldoutItem]]
    metrics: dict[str, str]  # per ability: exact_match or loss
    max_new: dict[str, int]  # per ability: generation limit
    max_repeats: int
    base_scores: dict[str, dict[str, float]]  # the untrained base's raw scores: the 0 of every score
    weights: dict[str, float]  # of the objective
    seed: int  # a search trial's training seed
    plan: BudgetPlan | None = None
    runs: tuple[GridRun, ...] = ()

    def mixture(self, params: Mapping[str, Any]) -> tuple[dict[str, int], int]:
        """``(counts, training seed)`` of the trial with Tune parameters ``params``: a grid's
        run ``params["run"]``, or a search's point under the plan (under ``budget_fraction``
        of the budget when the search is multi-objective)."""
        if self.runs:
            run = self.runs[int(params["run"])]
            return dict(run.mixture), run.seed
        assert self.plan is not None, "a search's setup has a plan"
        return mixture_of(params, self.plan), self.seed


def mixture_of(params: Mapping[str, Any], plan: BudgetPlan) -> dict[str, int]:
    """The counts a search trial's parameters stand for under ``plan``."""
    if "budget_fraction" in params:
        plan = plan.with_budget(max(1, round(float(params["budget_fraction"]) * plan.budget)))
    return plan.allocate(point_of(params, plan.abilities))
