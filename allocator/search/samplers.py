"""The samplers a search may use (``search.sampler``), by name: Optuna's own, and the
project's growth-curve sampler (allocator.search.sampler)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from allocator.config import SearchConfig
from allocator.mixture.plan import BudgetPlan

if TYPE_CHECKING:
    from allocator.search.warmstart import WarmStart

__all__ = ["SAMPLERS", "make_sampler"]


def _tpe(search: SearchConfig, seed: int, plan: BudgetPlan, weights: Mapping[str, float], warm: Any) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.n_startup_trials)


def _gp(search: SearchConfig, seed: int, plan: BudgetPlan, weights: Mapping[str, float], warm: Any) -> Any:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=search.n_startup_trials)


def _cmaes(search: SearchConfig, seed: int, plan: BudgetPlan, weights: Mapping[str, float], warm: Any) -> Any:
    import optuna

    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=search.n_startup_trials)


def _random(search: SearchConfig, seed: int, plan: BudgetPlan, weights: Mapping[str, float], warm: Any) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _growth(search: SearchConfig, seed: int, plan: BudgetPlan, weights: Mapping[str, float], warm: Any) -> Any:
    from allocator.search.sampler import GrowthCurveSampler

    return GrowthCurveSampler(
        plan,
        weights=weights,
        n_startup_trials=search.n_startup_trials,
        kappa=search.kappa,
        explore_every=search.explore_every,
        seed=seed,
        prior=warm.prior if warm is not None else None,
        transfer=warm.transfer if warm is not None else None,
    )


SAMPLERS: dict[str, Callable[..., Any]] = {
    "tpe": _tpe,
    "random": _random,
    "gp": _gp,
    "cmaes": _cmaes,
    "growth": _growth,
}


def make_sampler(
    search: SearchConfig,
    seed: int,
    plan: BudgetPlan,
    weights: Mapping[str, float],
    warm: WarmStart | None = None,
) -> Any:
    """The Optuna sampler ``search.sampler`` names, seeded; the growth-curve sampler also
    fits a warm-start study's points and transference. An unknown name is an error, never
    a silent fall-back."""
    try:
        build = SAMPLERS[search.sampler]
    except KeyError:
        raise ValueError(f"unknown sampler {search.sampler!r} (expected one of {', '.join(SAMPLERS)})") from None
    return build(search, seed, plan, weights, warm)
