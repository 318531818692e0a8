"""``GrowthModel``: the mixture landscape as one growth curve per ability (pure math, no Optuna).

A mixture's score is, per ability, mostly a saturating function of how much of that
ability's data it holds (docs/STUDY.md; allocator.curves.growth). The model fits that to
measured mixtures and says which mixture to try next. The growth-curve sampler
(allocator.search.sampler) is thin Optuna glue over it, and ``allocator.recommend`` fits it
to an optimization's trials.

1. **Fit.** Per ability, ``allocator.curves.growth.fit_curve`` (AICc over the growth models,
   bounded by the normalized ceiling 1) to ``(count, score)`` points: the untrained base at
   (0, 0) (allocator.curves.scoring), a prior study's points (``prior``), and the measured
   mixtures; and ``draws`` bootstrap refits that resample the mixtures. With a transference
   matrix (a prior study's), each curve is fitted to the scores less the transfer predicted
   from the other abilities' counts, alternating twice (the prediction itself uses the
   curves). No curve predicts below the lowest score seen for its ability.
2. **Predict and optimize.** ``predicted_objective`` is the weighted mean of the predicted
   scores (own curve plus transfer, capped at a perfect score); ``optimum`` is its exact
   maximum over allocations of the budget within the per-ability bounds
   (allocator.curves.allocation's dynamic program).
3. **Acquisition** (``propose``). Candidates are the exact optimum of the fitted model and
   of ``candidates`` bootstrap draws (Thompson-style). Each is rated by an upper bound, the
   mean of its predicted objective over all draws plus ``kappa`` standard deviations; the
   best candidate that is not within ``min_distance`` (the fraction of the budget moved) of
   a ``taken`` allocation is proposed, or none when all are taken.
4. **Exploring volumes** (``propose(explore=True)``). The bootstrap knows nothing of
   volumes no trial has tried: an ability that scores nothing up to its largest tried share
   may cross a threshold just past it (a tiny proxy learns copying that way: 0 at 260
   examples, 0.8 at 500), and its flat curve would never send the model there. An
   exploration doubles the largest tried volume (at least twice the even share, within the
   bounds) of some abilities and lets the model allocate the rest. An ability qualifies when
   its optimistic gain (its weight times what its curve leaves below the ceiling at the
   largest tried volume, as if the untried range reached it) exceeds the predicted cost of
   forcing it there (the model's optimum minus the forced one's). Taken in order (the ones
   explored least often so far first, then by gain minus cost), qualifying abilities join
   the same proposal while their summed gain exceeds its cost: every trial scores every
   ability, so one trial tests several untried ranges. Where none qualifies, or every such
   proposal is taken, the upper bound's choice is proposed as usual.

Allocations are in units of the budget (examples). Deterministic given ``seed``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from allocator.curves.allocation import predicted_scores, tailored_allocation, transfer_coefficient
from allocator.curves.growth import MODELS, Curve, bootstrap, fit_curve

__all__ = ["SAMPLER_MODELS", "GrowthModel", "Proposal"]

# the study's models and a threshold: in a search an ability can score nothing until its
# share crosses a volume, then most of its plateau (a tiny proxy learns copying that way)
SAMPLER_MODELS = (*MODELS, "hill")

Curves = Mapping[str, Curve]


@dataclass(frozen=True)
class Proposal:
    """An allocation the model proposes, with what it predicts for it."""

    counts: dict[str, int]
    predicted: float  # the fitted model's objective
    sd: float  # over the bootstrap draws
    ucb: float  # mean over the draws + kappa sd: what the acquisition ranked by
    explore: list[str] | None  # the abilities whose untried range it explores, if any
    curves: dict[str, Curve]  # the fitted curves it was chosen with


class GrowthModel:
    """Growth curves per ability over a budget (module doc). ``caps`` bound each ability's
    count (its pool); ``weights`` weight the objective's abilities (default equal; the
    objective is their weighted mean of normalized scores); ``minimum``/``maximum`` bound each
    ability's count in the allocations the model proposes."""

    def __init__(
        self,
        budget: int,
        caps: Mapping[str, int],
        *,
        weights: Mapping[str, float] | None = None,
        minimum: Mapping[str, int] | None = None,
        maximum: Mapping[str, int] | None = None,
        prior: Mapping[str, Sequence[tuple[float, float]]] | None = None,
        transfer: Mapping[str, Mapping[str, float | None]] | None = None,
        draws: int = 16,
        candidates: int = 8,
        kappa: float = 1.0,
        min_distance: float = 0.02,
        models: Sequence[str] = SAMPLER_MODELS,
        seed: int | None = None,
    ) -> None:
        self.abilities = list(caps)
        self.budget = int(budget)
        self.caps = {a: int(caps[a]) for a in self.abilities}
        w = dict(weights) if weights is not None else {a: 1.0 for a in self.abilities}
        total = sum(w.get(a, 0.0) for a in self.abilities)
        if total <= 0:
            raise ValueError("weights must not all be zero")
        self.weights = {a: w.get(a, 0.0) / total for a in self.abilities}
        self.minimum = {a: int((minimum or {}).get(a, 0)) for a in self.abilities}
        self.maximum = {a: min(self.caps[a], int((maximum or {}).get(a, self.budget))) for a in self.abilities}
        if sum(self.minimum.values()) > self.budget or sum(self.maximum.values()) < self.budget:
            raise ValueError(f"the per-ability bounds cannot hold a budget of {self.budget}")
        self.prior = {a: [(float(v), float(s)) for v, s in (prior or {}).get(a, [])] for a in self.abilities}
        self.transfer = transfer
        self.draws, self.candidates, self.kappa = draws, candidates, kappa
        self.min_distance = min_distance
        self.models = list(models)
        self.rng = np.random.default_rng(seed)
        self.last_proposal: Proposal | None = None  # what ``propose`` chose last, for logs and tests

    def reseed(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    # -- 1. fit ----------------------------------------------------------------------

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
        self, data: dict, allocations: Sequence[Mapping[str, float]], curves: Curves
    ) -> dict[str, np.ndarray]:
        """Each ability's scores less the transfer (allocator.curves.allocation's model) from the
        mixtures' other abilities; the base and prior points are taken as own data."""
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

    # -- 2. predict and optimize ------------------------------------------------------

    def predicted_objective(self, counts: Mapping[str, float], curves: Curves) -> float:
        """The predicted objective: the weighted mean of the predicted scores."""
        if not self.transfer:
            return sum(self.weights[a] * float(curves[a](float(counts[a]))) for a in self.abilities)
        pred = predicted_scores(counts, curves, self.transfer, ceiling=1.0)
        return sum(self.weights[a] * pred[a] for a in self.abilities)

    def optimum(self, curves: Curves, minimum: Mapping[str, int] | None = None) -> dict[str, int]:
        """The exact allocation of the budget that maximizes the model with ``curves``
        (each ability at least ``minimum``, by default the model's own)."""
        return tailored_allocation(
            curves,
            self.transfer,
            self.budget,
            weights=self.weights,
            minimum=minimum or self.minimum,
            maximum=self.maximum,
            ceiling=1.0,  # transfer from several abilities must not add up past a perfect score
        )

    def moved(self, a: Mapping[str, float], b: Mapping[str, float]) -> float:
        """The fraction of the budget moved between two allocations."""
        return sum(abs(float(a[k]) - float(b[k])) for k in self.abilities) / (2.0 * self.budget)

    # -- 3. and 4. acquisition ----------------------------------------------------------

    def propose(
        self,
        allocations: Sequence[Mapping[str, float]],
        scores: Sequence[Mapping[str, float]],
        taken: Sequence[Mapping[str, float]] = (),
        explore: bool = False,
        explored: Mapping[str, int] | None = None,
    ) -> dict[str, int] | None:
        """The next allocation by the acquisition of the module doc (recorded with its
        prediction in ``last_proposal``), or None when every candidate is within
        ``min_distance`` of a ``taken`` one. ``explore``: try a volume exploration first
        (module doc, 4); ``explored``: how many earlier proposals explored each ability."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow in a steep bootstrap fit
            curves, boot = self.fit(allocations, scores, seed=int(self.rng.integers(2**31)))
            if explore:
                for names, c in self._explorations(curves, [*allocations, *taken], explored or {}):
                    if self._untaken(c, taken):
                        return self._chosen(c, self._rating(c, curves, boot), curves, names)
            cands = [self.optimum(curves)]
            for k in self.rng.permutation(len(boot))[: self.candidates]:
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
        self, counts: Mapping[str, float], curves: Curves, boot: Sequence[Curves]
    ) -> tuple[float, float, float]:
        """An allocation's upper bound (mean over the draws + ``kappa`` sd), the fitted
        model's predicted objective, and the sd over the draws."""
        values = np.array([self.predicted_objective(counts, b) for b in boot])
        ucb = float(values.mean() + self.kappa * values.std())
        return ucb, float(self.predicted_objective(counts, curves)), float(values.std())

    def _untaken(self, counts: Mapping[str, float], taken: Sequence[Mapping[str, float]]) -> bool:
        return all(self.moved(counts, t) >= self.min_distance for t in taken)

    def _chosen(
        self, counts: dict[str, int], rating: tuple[float, float, float], curves: Curves, explore: list[str] | None
    ) -> dict[str, int]:
        """Records the proposal in ``last_proposal`` and returns it."""
        ucb, mean, sd = rating
        self.last_proposal = Proposal(counts, mean, sd, ucb, explore, dict(curves))
        return counts

    def _explorations(
        self, curves: Curves, tried: Sequence[Mapping[str, float]], explored: Mapping[str, int]
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
