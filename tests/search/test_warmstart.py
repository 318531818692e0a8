"""Warm starts: what a study or an optimization may contribute, and the user errors."""

import pytest

from allocator.errors import UserError
from allocator.search.warmstart import warm_start

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


def test_an_optimizations_trials_outside_this_searchs_bounds_stay_out():
    result = _optimize_result()
    result["trials"].append({"status": "FINISHED", "mixture": {"a": 20, "b": 80}, "scores": {"a": 0.1, "b": 0.5}})
    w = warm_start(result, "o.json", base_scores=BASE, **{**KW, "caps": {"a": 40, "b": 80}})
    assert [t["mixture"] for t in w.trials] == [{"a": 20, "b": 80}]  # a=50 is over this search's maximum
    w = warm_start(result, "o.json", base_scores=BASE, **KW, minimum={"a": 30})
    assert [t["mixture"] for t in w.trials] == [{"a": 50, "b": 50}]  # a=20 is under its minimum
    with pytest.raises(UserError, match="no finished trial of this budget within this search's bounds"):
        warm_start(result, "o.json", base_scores=BASE, **KW, minimum={"a": 60})


def test_a_study_warm_start_keeps_the_minimum_and_fits_its_own_designs_points():
    from ..helpers import study_result, synthetic_study

    cfg, abilities, records = synthetic_study()
    base = {a: BASE["a"] for a in abilities}
    study = {**study_result(cfg, abilities, records), "runs": records, "base_scores": base}
    kw = {
        **KW,
        "abilities": abilities,
        "caps": dict.fromkeys(abilities, 1000),
        "weights": dict.fromkeys(abilities, 1.0),
    }
    w = warm_start(study, "s.json", base_scores=base, **{**kw, "budget": 600}, minimum={"flat": 250})
    assert w.enqueue["study-tailored"]["flat"] >= 250 and sum(w.enqueue["study-tailored"].values()) == 600
    # the study's own design is isolated: its points are the isolated runs (and no joint one)
    assert study["analysis"]["own_design"] == "isolated" and w.transfer is not None
    isolated = [r for r in records if r["design"] == "isolated" and r["ability"] == "sat"]
    assert len(w.prior["sat"]) == len(isolated)
