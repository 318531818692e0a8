"""allocator: adaptive per-ability data allocation for instruction tuning.

Public API::

    import allocator
    result = allocator.optimize()                       # the embedded default
    result = allocator.optimize("experiments/default.yaml", trials=4)
    result.best["mixture"]                              # ability -> examples

    s = allocator.study("experiments/study_suite.yaml")  # growth curves per ability
    rec = allocator.recommend(s, budget=4000)            # counts, predictions, rationale
    c = allocator.confirm(None, {"tailored": rec.counts}) # fresh proxy runs, 3 seeds
"""

from allocator.config import OptimizeConfig, load_config
from allocator.errors import UserError
from allocator.optimize import OptimizeResult, optimize
from allocator.recommend import Recommendation, recommend
from allocator.study import ConfirmResult, StudyResult, confirm, study

__all__ = [
    "ConfirmResult",
    "OptimizeConfig",
    "OptimizeResult",
    "Recommendation",
    "StudyResult",
    "UserError",
    "confirm",
    "load_config",
    "optimize",
    "recommend",
    "study",
]
