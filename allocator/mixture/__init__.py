"""2. Pool -> mixture, pure math: the budget plan and the mixture space.

``plan.BudgetPlan`` says what a search allocates (budget, unit, caps, minimums);
``mapping`` maps a point of the search space (one ``u`` in [0, 1] per ability) to example
counts and back.
"""

from allocator.mixture.mapping import (
    counts_from_point,
    counts_from_weights,
    examples_within,
    point_from_counts,
    proportional_counts,
    uniform_counts,
    uniform_point,
)
from allocator.mixture.plan import BudgetPlan

__all__ = [
    "BudgetPlan",
    "counts_from_point",
    "counts_from_weights",
    "examples_within",
    "point_from_counts",
    "proportional_counts",
    "uniform_counts",
    "uniform_point",
]
