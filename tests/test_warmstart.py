"""Warm starts: what a study or an optimization may contribute, and the user errors."""

import pytest

from allocator.errors import UserError
from allocator.warmstart import warm_start

BASE = {"a": {"loss": 2.0}, "b": {"loss": 3.0, "exact_match": 0.0}}
KW = {
    "budget": 100,
    "unit": "examples",
    "abilities": ["a", "b"],
    "caps": {"a": 80, "b": 80},
    "weights": {"a": 1.0, "b": 1.0},
}


def _optimize_result(budget=100):
    trials = [
        {"status": "FINISHED", "mixture": {"a": 50, "b": 50}, "scores": {"a": 0.2, "b": 0.4}},
        {"status": "FINISHED", "mixture": {"a": 30, "b": 40}, "scores": {"a": 0.1, "b": 0.3}},  # a cheaper one
        {"status": "FAILED", "mixture": {"a": 90, "b": 10}, "scores": {}},
    ]
    return {"trials": trials, "best": trials[0], "base_scores": BASE, "config": {"budget": budget}}


def test_an_optimizations_whole_budget_finished_trials_join_with_objectives_in_this_searchs_weights():
    w = warm_start(_optimize_result(), "o.json", base_scores=BASE, **{**KW, "weights": {"a": 3.0, "b": 1.0}})
    assert w.kind == "optimize" and w.enqueue == {} and w.prior is None
    # (3 * 0.2 + 0.4) / 4: the objective in this search's weights; the 70-example trial stays out
    assert w.trials == [
        {"mixture": {"a": 50, "b": 50}, "scores": {"a": 0.2, "b": 0.4}, "objective": pytest.approx(0.25)}
    ]
    assert w.summary()["trials_added"] == 1


@pytest.mark.parametrize(
    ("result", "kwargs", "message"),
    [
        (_optimize_result(120), {}, "an optimization with budget 120, this search has 100"),
        (_optimize_result(), {"unit": "tokens"}, "needs budget_unit examples"),
        (_optimize_result(), {"abilities": ["a", "c"]}, r"its abilities \(a, b\) are not this pool's \(a, c\)"),
        ({"hello": 1}, {}, "neither a study nor an optimize result"),
        ({**_optimize_result(), "base_scores": {**BASE, "a": {"loss": 2.5}}}, {}, "a different untrained base"),
    ],
)
def test_unsound_warm_starts_are_user_errors(result, kwargs, message):
    with pytest.raises(UserError, match=message):
        warm_start(result, "o.json", base_scores=BASE, **{**KW, **kwargs})
