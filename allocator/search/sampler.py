"""``GrowthCurveSampler``: an Optuna sampler over the growth-curve model of the landscape.

Thin glue: ``allocator.curves.model.GrowthModel`` fits, predicts and proposes; this class
reads what it needs from an Optuna study and writes the proposal back as a point of the
mixture space (allocator.mixture):

1. **Data.** Every finished trial carries its per-ability normalized scores in the user
   attribute ``allocator.scores`` (the search's Optuna extension sets it from the trial's
   report; a plain Optuna objective sets it itself) and, optionally, the allocation it
   trained on, in units of the budget, in ``allocator.allocation`` (otherwise it is
   recomputed from the trial's ``u_<ability>`` parameters by
   ``allocator.mixture.counts_from_point``). A prior study adds its points
   (``allocator.studies.analysis.prior_from_study``).
2. **Taken.** Finished, running, pruned and failed trials' allocations are taken: the model
   proposes nothing within ``min_distance`` of them. When every candidate is taken, the
   independent sampler explores instead.
3. **The exploration cycle.** Every ``explore_every``-th model proposal asks the model to
   explore untried volumes (allocator.curves.model, 4). The cycle is counted in the study
   (a system attribute per model proposal), so that a resumed or distributed search keeps it.
4. **Fallback.** Until ``n_startup_trials`` scored trials have finished (with a prior
   study, once the first has), and for any parameter outside the mixture space, the
   independent sampler (random by default) samples, as Optuna's GP and CMA-ES samplers do.

It is an ordinary ``optuna.samplers.BaseSampler``: relative sampling over the
``u_<ability>`` space, define-by-run for anything else, ``reseed_rng``; Ray Tune's
``OptunaSearch``, Optuna storages and allocator's MLflow logging treat it like any other
sampler. Single objective only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from allocator.curves.model import SAMPLER_MODELS, GrowthModel, Proposal
from allocator.data.labels import param_name
from allocator.mixture import BudgetPlan, counts_from_point, point_from_counts
from allocator.search.extensions import set_trial_system_attr
from allocator.trial.setup import point_of

__all__ = ["ALLOCATION_ATTR", "PROPOSAL_ATTR", "SCORES_ATTR", "GrowthCurveSampler"]

SCORES_ATTR = "allocator.scores"
ALLOCATION_ATTR = "allocator.allocation"
PROPOSAL_ATTR = "allocator.growth_proposal"  # "model", or the list of abilities a proposal explores


class GrowthCurveSampler(BaseSampler):
    """Proposes the mixtures a ``GrowthModel`` of the trials rates best (module doc).

    ``plan`` is the budget plan (allocator.mixture.BudgetPlan): its caps bound the counts and
    its minimum is the mixture space's own (points map to counts above it); ``minimum`` may
    raise it for the proposals and ``maximum`` lower the caps; the rest configures the
    model (allocator.curves.model).
    """

    def __init__(
        self,
        plan: BudgetPlan,
        *,
        weights: Mapping[str, float] | None = None,
        minimum: Mapping[str, int] | None = None,
        maximum: Mapping[str, int] | None = None,
        prior: Mapping[str, Sequence[tuple[float, float]]] | None = None,
        transfer: Mapping[str, Mapping[str, float | None]] | None = None,
        n_startup_trials: int = 4,
        draws: int = 16,
        candidates: int = 8,
        kappa: float = 1.0,
        min_distance: float = 0.02,
        explore_every: int = 3,
        models: Sequence[str] = SAMPLER_MODELS,
        seed: int | None = None,
        independent_sampler: BaseSampler | None = None,
    ) -> None:
        abilities = plan.abilities
        self.space_minimum = {a: int(plan.minimum.get(a, 0)) for a in abilities}
        self.model = GrowthModel(
            plan.budget,
            plan.caps,
            weights=weights,
            minimum={a: max(self.space_minimum[a], int((minimum or {}).get(a, 0))) for a in abilities},
            maximum=maximum,
            prior=prior,
            transfer=transfer,
            draws=draws,
            candidates=candidates,
            kappa=kappa,
            min_distance=min_distance,
            models=models,
            seed=seed,
        )
        self.n_startup_trials = n_startup_trials
        if explore_every < 0:
            raise ValueError(f"explore_every must be >= 0 (0: never explore), got {explore_every}")
        self.explore_every = explore_every
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self.proposals: dict[int, Proposal] = {}  # trial number -> what the model proposed for it

    @property
    def abilities(self) -> list[str]:
        return self.model.abilities

    # -- Optuna's sampler interface ---------------------------------------------------

    def reseed_rng(self) -> None:
        self.model.reseed()
        self._independent.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {param_name(a): FloatDistribution(0.0, 1.0) for a in self.abilities}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if len(study.directions) > 1:
            raise ValueError("GrowthCurveSampler does not support multi-objective optimization")
        if study.direction != StudyDirection.MAXIMIZE:
            raise ValueError("GrowthCurveSampler maximizes a score: create the study with direction='maximize'")
        if not search_space or "fixed_params" in trial.system_attrs:
            return {}  # an enqueued trial (the baseline, a warm start) has its point already
        finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if self._scored(t)]
        needed = 1 if any(self.model.prior.values()) else self.n_startup_trials
        if len(finished) < max(needed, 1):
            return {}
        # a pruned or failed trial adds no point to the model, which would propose it again (and,
        # with the same training seed, see it pruned or fail again): it is taken as well
        others = (TrialState.RUNNING, TrialState.WAITING, TrialState.PRUNED, TrialState.FAIL)
        running = [t for t in study.get_trials(deepcopy=False, states=others) if t.number != trial.number]
        # the cycle is counted in the study (a system attribute per model proposal), so that a
        # resumed or distributed search keeps it
        trials = study.get_trials(deepcopy=False)
        kinds = [t.system_attrs[PROPOSAL_ATTR] for t in trials if PROPOSAL_ATTR in t.system_attrs]
        explore = self.explore_every > 0 and len(kinds) % self.explore_every == self.explore_every - 1
        explored = {a: sum(1 for k in kinds if isinstance(k, list) and a in k) for a in self.abilities}
        counts = self.propose(
            [self.allocation(t) for t in finished],
            [{a: float(t.user_attrs[SCORES_ATTR][a]) for a in self.abilities} for t in finished],
            taken=[x for t in finished + running for x in self._taken(t)],
            explore=explore,
            explored=explored,
        )
        if counts is None:
            return {}
        proposal = self.model.last_proposal
        assert proposal is not None
        self.proposals[trial.number] = proposal
        set_trial_system_attr(study, trial, PROPOSAL_ATTR, proposal.explore or "model")
        point = point_from_counts(counts, self.space_minimum)
        return {name: point[name[2:]] for name in search_space if name[2:] in point}

    def propose(self, *args: Any, **kwargs: Any) -> dict[str, int] | None:
        """``GrowthModel.propose`` (a seam for tests that record what the sampler asked)."""
        return self.model.propose(*args, **kwargs)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._independent.after_trial(study, trial, state, values)

    # -- reading trials -------------------------------------------------------------

    def allocation(self, t: FrozenTrial) -> dict[str, float]:
        """The allocation a trial trained on: its reported ``allocator.allocation``, else the
        counts its point stands for."""
        given = t.user_attrs.get(ALLOCATION_ATTR)
        if isinstance(given, dict):
            return {a: float(given[a]) for a in self.abilities}
        return self._counts(point_of(t.params, self.abilities))

    def _scored(self, t: FrozenTrial) -> bool:
        s = t.user_attrs.get(SCORES_ATTR)
        return isinstance(s, dict) and all(a in s for a in self.abilities) and self._has_point(t)

    def _has_point(self, t: FrozenTrial) -> bool:
        return ALLOCATION_ATTR in t.user_attrs or all(param_name(a) in t.params for a in self.abilities)

    def _taken(self, t: FrozenTrial) -> list[dict[str, float]]:
        """The allocation a trial trained on and, when its parameters name another, the
        one it proposed: neither is worth proposing again."""
        out = [self.allocation(t)] if self._has_point(t) else []
        if all(param_name(a) in t.params for a in self.abilities):
            out.append(self._counts(point_of(t.params, self.abilities)))
        return out

    def _counts(self, point: Mapping[str, float]) -> dict[str, float]:
        counts = counts_from_point(point, self.model.budget, self.model.caps, self.space_minimum)
        return {a: float(n) for a, n in counts.items()}
