"""The budget plan: bounds, the point -> counts mapping under it, and its user errors."""

import pytest

from allocator.errors import UserError
from allocator.mixture import BudgetPlan


def test_bounds_become_the_plans_caps_and_minimum_and_impossible_ones_are_user_errors():
    plan = BudgetPlan("examples", 100, {"a": 80, "b": 80, "c": 80})
    assert plan.bounded(None, None) is plan
    b = plan.bounded({"a": 10}, {"b": 20})
    assert b.caps == {"a": 80, "b": 20, "c": 80} and b.minimum == {"a": 10} and plan.caps["b"] == 80
    for u in (0.0, 0.3, 0.9):
        counts = b.allocate({"a": 0.0, "b": u, "c": 1 - u})
        assert sum(counts.values()) == 100 and counts["a"] >= 10 and counts["b"] <= 20
    for minimum, maximum, message in [
        ({"x": 1}, None, "search.minimum: 'x' is not an ability"),
        ({"a": 90}, None, "a=90 exceeds what a can give"),
        ({"a": 60, "b": 50}, None, "add up to 110, over the budget 100"),
        (None, {"a": 10, "b": 10, "c": 10}, "leave room for 30, under the budget 100"),
    ]:
        with pytest.raises(UserError, match=message):
            plan.bounded(minimum, maximum)


def test_a_smaller_budget_keeps_the_caps_and_the_minimum():
    plan = BudgetPlan("examples", 100, {"a": 80, "b": 80}, minimum={"a": 10})
    small = plan.with_budget(40)
    assert (small.budget, small.caps, small.minimum) == (40, plan.caps, plan.minimum)
    counts = small.allocate({"a": 0.0, "b": 1.0})
    assert counts == {"a": 10, "b": 30}
