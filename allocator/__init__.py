"""allocator: adaptive per-ability data allocation for instruction tuning.

Public API::

    import allocator
    result = allocator.optimize()                       # the embedded default
    result = allocator.optimize("experiments/default.yaml", trials=4)
    result.best["mixture"]                              # ability -> examples

    s = allocator.study("experiments/study_suite.yaml")  # growth curves per ability
    rec = allocator.recommend(s, budget=4000)            # counts, predictions, rationale
    c = allocator.confirm(cfg, {"tailored": rec.counts})  # fresh runs with the baselines, 3 seeds,
                                                         # on the proxy and on cfg's target:
    allocator.strategies()                               # confirmed mixtures, best first (MLflow registry)
    allocator.export("champion", "llamafactory", "out/") # its exact examples for your trainer

The package, in pipeline order (each folder's docstring says more)::

    config.py          typed config sections, load_config, resolve_config
    data/              1. config -> pool: formats, reading, abilities, split, the built-in suite,
                          tokenized pools (data.pools)
    mixture/           2. pool -> mixture, pure: the budget plan (BudgetPlan), point <-> counts
    trial/             3. the Ray boundary: TrialSetup shipped to workers, the worker body,
                          TrialRecord, the one Tune callback that writes MLflow, the one job runner
    curves/            4. scores -> curves -> allocation, pure: scoring, growth, transference,
                          allocation, and the GrowthModel that the sampler and recommend share
    search/            the job "optimize": samplers (thin Optuna glue over GrowthModel), the
                          Ray/Optuna extensions, warm starts, choosing the recommendation
    studies/           the jobs "study" and "confirm": their grids and the study's analysis
    recommendation.py  5. curves -> counts for a budget
    report/            I/O: MLflow tracking, strategies in the Model Registry, result files,
                          export, console tables, figures
    cli.py             one function per sub-command
    errors.py          UserError: a leaf

``trainers/`` (the model side) and ``ray_cluster/`` (reaching Ray) stand beside this
package and never import it. The names below load on first use: ``import allocator`` or
``from allocator.curves import scoring`` loads no job, no Ray and no torch.
"""

from importlib import import_module
from typing import Any

_API = {
    "ConfirmResult": "allocator.report.results",
    "OptimizeConfig": "allocator.config",
    "OptimizeResult": "allocator.report.results",
    "Recommendation": "allocator.recommendation",
    "StudyResult": "allocator.report.results",
    "UserError": "allocator.errors",
    "confirm": "allocator.studies.confirm",
    "export": "allocator.report.export",
    "load_config": "allocator.config",
    "optimize": "allocator.search.optimize",
    "recommend": "allocator.recommendation",
    "strategies": "allocator.report.registry",
    "study": "allocator.studies.study",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'allocator' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
