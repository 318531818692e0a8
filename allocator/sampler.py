"""``GrowthCurveSampler``: an Optuna sampler that models the mixture landscape.

A mixture's score is, per ability, mostly a saturating function of how much of that
ability's data it holds (docs/STUDY.md; allocator.growth). The sampler fits that
model to the trials finished so far and proposes the mixture the model rates best,
so it needs few trials where a general-purpose sampler needs many:

1. **Data.** Every finished trial carries its per-ability normalized scores in the
   user attribute ``allocator.scores`` (allocator.search sets it from the trial's
   report; a plain Optuna objective sets it itself) and, optionally, the allocation
   it trained on, in units of the budget, in ``allocator.allocation`` (otherwise it
   is recomputed from the trial's ``u_<ability>`` parameters by
   ``allocator.mixtures.counts_from_point``). The untrained base scores 0 on every
   ability (allocator.scoring), which anchors each curve at volume 0. A prior study
   adds its points (``prior_from_study``): the volumes it trained each ability at and
   the scores it measured.
2. **Model.** Per ability, ``allocator.growth.fit_curve`` (AICc over the growth
   models, bounded by the normalized ceiling 1), and ``draws`` bootstrap refits that
   resample the trials. With a transference matrix (a prior study's), each curve is
   fitted to the scores less the transfer predicted from the other abilities'
   volumes, alternating twice (the prediction itself uses the curves).
3. **Acquisition.** Candidates are the exact optimum (allocator.allocation's dynamic
   program, under the budget and per-ability bounds) of the fitted model and of
   ``candidates`` bootstrap draws (Thompson-style). Each candidate is rated by an
   upper bound, the mean of its predicted objective over all draws plus ``kappa``
   standard deviations; the best candidate that is not within ``min_distance`` (the
   fraction of the budget moved) of a finished, running, pruned or failed trial is
   proposed. When every candidate is taken, the independent sampler explores instead.
4. **Exploring volumes.** The bootstrap knows nothing of volumes no trial has tried:
   an ability that scores nothing up to its largest tried share may cross a threshold
   just past it (a tiny proxy learns copying that way: 0 at 260 examples, 0.8 at 500),
   and its flat curve would never send the model there. So every ``explore_every``-th
   model proposal doubles the largest tried volume (in a finished or running trial; at
   least twice the even share, within the bounds) of some abilities and lets the model
   allocate the rest. An ability qualifies when its optimistic gain (its weight times
   what its curve leaves below the ceiling at the largest tried volume, as if the
   untried range reached it) exceeds the predicted cost of forcing it there (the
   model's optimum minus the forced one's). Taken in order (the ones explored least
   often so far first, then by gain minus cost), qualifying abilities join the same
   proposal while their summed gain exceeds its cost: every trial scores every
   ability, so one trial tests several untried ranges. Where none qualifies, or every
   such proposal is taken, the sampler proposes the upper bound's choice as usual.
5. **Fallback.** Until ``n_startup_trials`` scored trials have finished (with a prior
   study, once the first has), and for any parameter outside the mixture space, the
   independent sampler (random by default) samples, as Optuna's GP and CMA-ES
   samplers do.

It is an ordinary ``optuna.samplers.BaseSampler``: relative sampling over the
``u_<ability>`` space of allocator.mixtures, define-by-run for anything else,
``reseed_rng``; Ray Tune's ``OptunaSearch``, Optuna storages and allocator's MLflow
logging treat it like any other sampler. Single objective only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from allocator.allocation import predicted_scores, tailored_allocation, transfer_coefficient
from allocator.growth import MODELS, Curve, bootstrap, fit_curve
from allocator.mixtures import counts_from_point

__all__ = ["ALLOCATION_ATTR", "SCORES_ATTR", "GrowthCurveSampler", "point_from_counts", "prior_from_study"]

# the study's models and a threshold: in a search an ability can score nothing until its
# share crosses a volume, then most of its plateau (a tiny proxy learns copying that way)
SAMPLER_MODELS = (*MODELS, "hill")
SCORES_ATTR = "allocator.scores"
ALLOCATION_ATTR = "allocator.allocation"
PROPOSAL_ATTR = "allocator.growth_proposal"  # "model", or the list of abilities a proposal explores


def point_from_counts(counts: Mapping[str, float], minimum: Mapping[str, int] | None = None) -> dict[str, float]:
    """A point ``{ability: u}`` that ``counts_from_point`` (with the same ``minimum``) maps
    back to ``counts`` when they respect the caps: weights proportional to the counts
    above the minimum, scaled so that equal ones give the uniform point 0.5."""
    above = {a: float(n) - float((minimum or {}).get(a, 0)) for a, n in counts.items()}
    total = sum(above.values())
    if total <= 0:
        return {a: 0.5 for a in counts}
    scale = len(counts) * math.log(2.0) / total
    return {a: float(-math.expm1(-scale * max(n, 0.0))) for a, n in above.items()}


def prior_from_study(study: Mapping[str, Any], design: str | None = None) -> dict[str, list[tuple[float, float]]]:
    """Per ability, ``(volume, score)`` of every finished run of a study result (its
    dict) that trained that ability or nothing (the base): the points of its growth
    curves. ``design`` keeps one design's runs: an isolated run's score is the ability's
    own data alone (what a fit less a transference matrix models), a joint run's
    includes the transfer from the other abilities at the same volume (what a search's
    mixtures see); mixing the two would fit one curve to two regimes."""
    out: dict[str, list[tuple[float, float]]] = {a: [] for a in study["abilities"]}
    for r in study["runs"]:
        if r.get("status", "FINISHED") != "FINISHED":
            continue
        if design is not None and r.get("design", design) != design:
            continue
        trained = any(n > 0 for n in r["mixture"].values())
        for a in out:
            if r["mixture"][a] > 0 or not trained:
                out[a].append((float(r["mixture"][a]), float(r["scores"][a])))
    return out


class GrowthCurveSampler(BaseSampler):
    """Proposes mixtures that maximize a growth-curve model of the trials (module doc).

    ``plan`` is the budget plan of allocator.mixtures (``unit``, ``budget``, ``caps``
    in units of the budget, optionally ``minimum``); ``weights`` weight the objective's abilities (default
    equal; the objective must be their weighted mean of normalized scores);
    ``minimum``/``maximum`` bound each ability's share in units of the budget.
    """

    def __init__(
        self,
        plan: Mapping[str, Any],
        *,
        weights: Mapping[str, float] | None = None,
        minimum: Mapping[str, int] | None = None,
        maximum: Mapping[str, int] | None = None,
        prior: Mapping[str, Sequence[tuple[float, float]]] | None = None,
        transfer: Mapping[str, Mapping[str, float]] | None = None,
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
        self.abilities = list(plan["caps"])
        self.budget = int(plan["budget"])
        self.caps = {a: int(plan["caps"][a]) for a in self.abilities}
        w = dict(weights) if weights is not None else {a: 1.0 for a in self.abilities}
        total = sum(w.get(a, 0.0) for a in self.abilities)
        if total <= 0:
            raise ValueError("weights must not all be zero")
        self.weights = {a: w.get(a, 0.0) / total for a in self.abilities}
        # the space's own minimum (plan["minimum"]: allocator.mixtures) maps points to counts;
        # ``minimum`` may raise it for the proposals
        self.space_minimum = {a: int(plan.get("minimum", {}).get(a, 0)) for a in self.abilities}
        self.minimum = {a: max(self.space_minimum[a], int((minimum or {}).get(a, 0))) for a in self.abilities}
        self.maximum = {a: min(self.caps[a], int((maximum or {}).get(a, self.budget))) for a in self.abilities}
        if sum(self.minimum.values()) > self.budget or sum(self.maximum.values()) < self.budget:
            raise ValueError(f"the per-ability bounds cannot hold a budget of {self.budget}")
        self.prior = {a: [(float(v), float(s)) for v, s in (prior or {}).get(a, [])] for a in self.abilities}
        self.transfer = transfer
        self.n_startup_trials = n_startup_trials
        self.draws, self.candidates, self.kappa = draws, candidates, kappa
        self.min_distance = min_distance
        if explore_every < 0:
            raise ValueError(f"explore_every must be >= 0 (0: never explore), got {explore_every}")
        self.explore_every = explore_every
        self.models = list(models)
        self._rng = np.random.default_rng(seed)
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self.last_proposal: dict[str, Any] | None = None  # what the model said, for logs and tests
        # trial number -> predicted objective, sd, bound, and the abilities it explores (or None)
        self.proposals: dict[int, dict[str, Any]] = {}

    # -- Optuna's sampler interface ---------------------------------------------------

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._independent.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {f"u_{a}": FloatDistribution(0.0, 1.0) for a in self.abilities}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._raise_error_if_multi_objective(study)
        if study.direction != StudyDirection.MAXIMIZE:
            raise ValueError("GrowthCurveSampler maximizes a score: create the study with direction='maximize'")
        if not search_space or "fixed_params" in trial.system_attrs:
            return {}  # an enqueued trial (the baseline, a warm start) has its point already
        finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if self._scored(t)]
        needed = 1 if any(self.prior.values()) else self.n_startup_trials
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
            [self._allocation(t) for t in finished],
            [{a: float(t.user_attrs[SCORES_ATTR][a]) for a in self.abilities} for t in finished],
            taken=[x for t in finished + running for x in self._taken(t)],
            explore=explore,
            explored=explored,
        )
        if counts is None:
            return {}
        assert self.last_proposal is not None
        self.proposals[trial.number] = {k: self.last_proposal[k] for k in ("predicted", "sd", "ucb", "explore")}
        study._storage.set_trial_system_attr(trial._trial_id, PROPOSAL_ATTR, self.last_proposal["explore"] or "model")
        point = point_from_counts(counts, self.space_minimum)
        return {name: point[name[2:]] for name in search_space if name[2:] in point}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._independent.after_trial(study, trial, state, values)

    # -- the model ----------------------------------------------------------------

    def _scored(self, t: FrozenTrial) -> bool:
        s = t.user_attrs.get(SCORES_ATTR)
        return isinstance(s, dict) and all(a in s for a in self.abilities) and self._has_point(t)

    def _has_point(self, t: FrozenTrial) -> bool:
        return ALLOCATION_ATTR in t.user_attrs or all(f"u_{a}" in t.params for a in self.abilities)

    def _taken(self, t: FrozenTrial) -> list[dict[str, float]]:
        """The allocation a trial trained on and, when its parameters name another, the
        one it proposed: neither is worth proposing again."""
        out = [self._allocation(t)] if self._has_point(t) else []
        if all(f"u_{a}" in t.params for a in self.abilities):
            point = {a: float(t.params[f"u_{a}"]) for a in self.abilities}
            out.append(self._counts(point))
        return out

    def _allocation(self, t: FrozenTrial) -> dict[str, float]:
        given = t.user_attrs.get(ALLOCATION_ATTR)
        if isinstance(given, dict):
            return {a: float(given[a]) for a in self.abilities}
        point = {a: float(t.params[f"u_{a}"]) for a in self.abilities}
        return self._counts(point)

    def _counts(self, point: Mapping[str, float]) -> dict[str, float]:
        counts = counts_from_point(point, self.budget, self.caps, self.space_minimum)
        return {a: float(n) for a, n in counts.items()}

    def fit(
        self, allocations: Sequence[Mapping[str, float]], scores: Sequence[Mapping[str, float]], seed: int = 0
    ) -> tuple[dict[str, Curve], list[dict[str, Curve]]]:
        """The fitted curve per ability and ``draws`` bootstrap sets of curves."""
        data = {}
        pairs = list(zip(allocations, scores, strict=True))
        for a in self.abilities:
            pts = [(0.0, 0.0)] + self.prior[a] + [(float(x[a]), float(s[a])) for x, s in pairs]
            data[a] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
        curves = self._fit_all(data, None)
        own: dict[str, np.ndarray] | None = None
        if self.transfer:
            for _ in range(2):  # scores less the transfer predicted by the current curves
                own = self._own_part(data, allocations, curves)
                curves = self._fit_all(data, own)
        boot: list[dict[str, Curve]] = [{} for _ in range(self.draws)]
        for i, a in enumerate(self.abilities):
            # the draws are refits of what the curve was fitted to: with transference, the
            # own part (the prediction adds the transfer back, so raw scores would count it twice)
            v, y = data[a][0], (data[a][1] if own is None else own[a])
            draws = bootstrap(v, y, curves[a].model, self.draws, seed + i, ceiling=1.0, resample="points")
            # no prediction below the lowest score seen: a draw that fits a falling curve to
            # a few points would extrapolate it without bound and swamp the upper bound's sd
            low = float(np.min(y))
            curves[a] = replace(curves[a], params={**curves[a].params, "floor": low})
            for k, c in enumerate(draws):
                boot[k][a] = replace(c, params={**c.params, "floor": low})
        return curves, boot

    def _fit_all(self, data: dict, own: dict[str, np.ndarray] | None) -> dict[str, Curve]:
        return {a: fit_curve(v, y if own is None else own[a], self.models, ceiling=1.0) for a, (v, y) in data.items()}

    def _own_part(
        self, data: dict, allocations: Sequence[Mapping[str, float]], curves: Mapping[str, Curve]
    ) -> dict[str, np.ndarray]:
        """Each ability's scores less the transfer (allocator.allocation's model) from the
        trials' other abilities; the base and prior points are taken as own data."""
        t = self.transfer or {}
        out = {}
        for a, (_, y) in data.items():
            f, f0 = curves[a], float(curves[a](0.0))
            others = [b for b in self.abilities if b != a]
            moved = np.array(
                [sum(transfer_coefficient(t, a, b) * (float(f(x[b])) - f0) for b in others) for x in allocations]
            )
            own = y.copy()
            own[len(y) - len(allocations) :] -= moved
            out[a] = own
        return out

    def predicted_objective(self, counts: Mapping[str, float], curves: Mapping[str, Curve]) -> float:
        """The predicted objective: the weighted mean of the predicted scores."""
        if not self.transfer:
            return sum(self.weights[a] * float(curves[a](float(counts[a]))) for a in self.abilities)
        pred = predicted_scores(counts, curves, self.transfer, ceiling=1.0)
        return sum(self.weights[a] * pred[a] for a in self.abilities)

    def optimum(self, curves: Mapping[str, Curve], minimum: Mapping[str, int] | None = None) -> dict[str, int]:
        """The exact allocation of the budget that maximizes the model with ``curves``
        (each ability at least ``minimum``, by default the sampler's own)."""
        return tailored_allocation(
            curves,
            self.transfer,
            self.budget,
            weights=self.weights,
            minimum=minimum or self.minimum,
            maximum=self.maximum,
            ceiling=1.0,  # transfer from several abilities must not add up past a perfect score
        )

    def propose(
        self,
        allocations: Sequence[Mapping[str, float]],
        scores: Sequence[Mapping[str, float]],
        taken: Sequence[Mapping[str, float]] = (),
        explore: bool = False,
        explored: Mapping[str, int] | None = None,
    ) -> dict[str, int] | None:
        """The next allocation (units of the budget) by the acquisition of the module doc,
        or None when every candidate is within ``min_distance`` of a ``taken`` one.
        ``explore``: try a volume exploration first (module doc, 4); ``explored``: how
        many earlier proposals explored each ability."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow in a steep bootstrap fit
            curves, boot = self.fit(allocations, scores, seed=int(self._rng.integers(2**31)))
            if explore:
                for names, c in self._explorations(curves, [*allocations, *taken], explored or {}):
                    if self._untaken(c, taken):
                        return self._chosen(c, self._rating(c, curves, boot), curves, names)
            cands = [self.optimum(curves)]
            for k in self._rng.permutation(len(boot))[: self.candidates]:
                cands.append(self.optimum(boot[int(k)]))
        unique: list[dict[str, int]] = []
        for c in cands:
            if c not in unique:
                unique.append(c)
        rated = sorted(((self._rating(c, curves, boot), c) for c in unique), key=lambda r: -r[0][0])
        for rating, c in rated:
            if self._untaken(c, taken):
                return self._chosen(c, rating, curves, None)
        self.last_proposal = None
        return None

    def _rating(
        self, counts: Mapping[str, float], curves: Mapping[str, Curve], boot: Sequence[Mapping[str, Curve]]
    ) -> tuple[float, float, float]:
        """An allocation's upper bound (mean over the draws + ``kappa`` sd), the fitted
        model's predicted objective, and the sd over the draws."""
        values = np.array([self.predicted_objective(counts, b) for b in boot])
        ucb = float(values.mean() + self.kappa * values.std())
        return ucb, float(self.predicted_objective(counts, curves)), float(values.std())

    def _untaken(self, counts: Mapping[str, float], taken: Sequence[Mapping[str, float]]) -> bool:
        return all(self._moved(counts, t) >= self.min_distance for t in taken)

    def _chosen(
        self,
        counts: dict[str, int],
        rating: tuple[float, float, float],
        curves: Mapping[str, Curve],
        explore: list[str] | None,
    ) -> dict[str, int]:
        """Records the proposal in ``last_proposal`` and returns it."""
        ucb, mean, sd = rating
        self.last_proposal = {
            "counts": counts,
            "predicted": mean,
            "sd": sd,
            "ucb": ucb,
            "curves": curves,
            "explore": explore,
        }
        return counts

    def _explorations(
        self, curves: Mapping[str, Curve], tried: Sequence[Mapping[str, float]], explored: Mapping[str, int]
    ) -> list[tuple[list[str], dict[str, int]]]:
        """The explorations worth proposing, best first (module doc, 4): ``(abilities,
        forced optimum)``. An ability qualifies when its optimistic gain exceeds the cost
        of forcing it to twice its largest volume in ``tried`` (finished and running
        trials) or the prior. The first exploration forces as many qualifying abilities
        at once as their summed gain pays for (each trial scores every ability, so one
        trial can test several untried ranges); then each alone. The abilities explored
        least often come first: one that stayed flat after a doubling is less likely to
        be learnable within the budget than one never pushed."""
        best = self.optimum(curves)
        value = self.predicted_objective(best, curves)
        even = 2.0 * self.budget / len(self.abilities)
        # the optimum moves in steps of tailored_allocation's unit: the target is a whole
        # number of them that the other abilities' minimums (rounded up to steps) leave room for
        unit = max(1, self.budget // 400)
        steps = {a: -(-self.minimum[a] // unit) for a in self.abilities}

        def forced(targets: Mapping[str, int]) -> tuple[dict[str, int], float] | None:
            try:
                c = self.optimum(curves, {**self.minimum, **targets})
            except ValueError:
                return None  # the bounds leave no whole steps for them
            if any(c[a] < n for a, n in targets.items()):
                return None
            return c, value - self.predicted_objective(c, curves)

        singles = []
        for a in self.abilities:
            most = max([0.0] + [v for v, _ in self.prior[a]] + [float(x[a]) for x in tried])
            room = min(self.maximum[a], (self.budget // unit - sum(steps.values()) + steps[a]) * unit)
            target = min(room // unit, -(-math.ceil(max(2.0 * most, even)) // unit)) * unit
            if target - most < self.min_distance * self.budget:
                continue  # explored up to its bounds already
            # optimistic: as if the untried range reached a perfect score (with transference the
            # curve is the ability's own part, so this overstates the headroom: more exploring)
            gain = self.weights[a] * (1.0 - float(curves[a](most)))
            one = forced({a: max(target, self.minimum[a])})
            if one is not None and gain > one[1]:
                singles.append((explored.get(a, 0), one[1] - gain, a, max(target, self.minimum[a]), gain, one[0]))
        singles.sort(key=lambda r: r[:2])
        # greedily add abilities, in that order, while their summed gain exceeds the cost
        targets: dict[str, int] = {}
        joint, paid = None, 0.0
        for *_, a, target, gain, _c in singles:
            both = forced({**targets, a: target})
            if both is not None and paid + gain > both[1]:
                targets[a], paid, joint = target, paid + gain, both[0]
        out = [(list(targets), joint)] if joint is not None and len(targets) > 1 else []
        return out + [([a], c) for *_, a, _t, _g, c in singles]

    def _moved(self, a: Mapping[str, float], b: Mapping[str, float]) -> float:
        """The fraction of the budget moved between two allocations."""
        return sum(abs(float(a[k]) - float(b[k])) for k in self.abilities) / (2.0 * self.budget)
