"""allocator: adaptive per-ability data allocation for instruction tuning.

Public API::

    import allocator
    result = allocator.optimize()                       # the embedded default
    result = allocator.optimize("experiments/default.yaml", trials=4)
    result.best["mixture"]                              # ability -> examples
"""

from allocator.config import OptimizeConfig, load_config
from allocator.errors import UserError
from allocator.optimize import OptimizeResult, optimize

__all__ = ["OptimizeConfig", "OptimizeResult", "UserError", "load_config", "optimize"]
