"""The search layer against real Ray Tune, Optuna and MLflow: what a failing trial leaves behind."""

import pytest

from allocator.errors import UserError
from allocator.optimize import _check_floor, bounded_plan
from allocator.search import TrialRecord, compute_stats, trial_metrics


def test_trial_metrics_normalize_each_ability_by_its_own_metric():
    raw = {"a": {"exact_match": 1.0, "loss": 0.1}, "b": {"loss": 2.0}}
    base = {"a": {"exact_match": 0.2, "loss": 3.0}, "b": {"loss": 4.0}}
    metrics = {"a": "exact_match", "b": "loss"}
    m = trial_metrics(raw, metrics, base, {"a": 1.0, "b": 1.0})
    assert m["score/a"] == pytest.approx(1.0) and m["score/b"] == pytest.approx(0.5)
    assert m["objective"] == pytest.approx(0.75)
    assert m["exact_match/a"] == 1.0 and "exact_match/b" not in m and m["loss/b"] == 2.0
    assert trial_metrics(raw, metrics, base, {"a": 0.0, "b": 2.0})["objective"] == pytest.approx(0.5)


def test_bounds_become_the_plans_caps_and_minimum_and_impossible_ones_are_user_errors():
    plan = {"unit": "examples", "budget": 100, "caps": {"a": 80, "b": 80, "c": 80}, "max_repeats": 1}
    assert bounded_plan(plan, None, None) is plan
    b = bounded_plan(plan, {"a": 10}, {"b": 20})
    assert b["caps"] == {"a": 80, "b": 20, "c": 80} and b["minimum"] == {"a": 10}
    from allocator.mixtures import allocate

    for u in (0.0, 0.3, 0.9):
        counts = allocate({"a": 0.0, "b": u, "c": 1 - u}, b)
        assert sum(counts.values()) == 100 and counts["a"] >= 10 and counts["b"] <= 20
    for minimum, maximum, message in [
        ({"x": 1}, None, "search.minimum: 'x' is not an ability"),
        ({"a": 90}, None, "a=90 exceeds what a can give"),
        ({"a": 60, "b": 50}, None, "add up to 110, over the budget 100"),
        (None, {"a": 10, "b": 10, "c": 10}, "leave room for 30, under the budget 100"),
    ]:
        with pytest.raises(UserError, match=message):
            bounded_plan(plan, minimum, maximum)


def _rec(name, kind, scores, status="FINISHED", steps=10, steps_total=10):
    r = TrialRecord(name, name, kind, {a: 1 for a in scores}, status=status, objective=sum(scores.values()))
    r.scores, r.steps, r.steps_total = scores, steps, steps_total
    return r


def test_a_trial_below_the_floor_is_reported_and_marked():
    base = _rec("uniform-baseline", "baseline", {"a": 0.5, "b": 0.5})
    ok = _rec("trial-001", "search", {"a": 0.9, "b": 0.45})
    low = _rec("trial-002", "search", {"a": 1.0, "b": 0.3})
    lines = []
    _check_floor([base, ok, low], base, 0.1, lines.append)
    assert ok.violations == [] and low.violations == ["b"] and base.violations == []
    assert lines[0].startswith("floor (0.1 below the uniform mixture's score): 1 trials violate it")
    assert lines[1] == "  trial-002: b 0.300 < 0.400"


def test_compute_stats_counts_what_early_stopping_saved():
    recs = [
        _rec("u", "baseline", {"a": 0.5}),
        _rec("t1", "search", {"a": 0.1}, status="EARLY_STOPPED", steps=5),
        _rec("t2", "search", {"a": 0.6}),
        _rec("t3", "search", {"a": 0.0}, status="FAILED", steps=None, steps_total=None),
        # a smaller mixture (multi-objective) trains fewer steps by design: nothing saved there
        _rec("t4", "search", {"a": 0.4}, steps=6, steps_total=6),
    ]
    s = compute_stats(recs)
    assert s == {"early_stopped": 1, "steps_trained": 31, "steps_without_early_stopping": 36, "compute_saved": 0.1389}


def test_asha_never_stops_the_baseline_but_it_sets_the_cutoff():
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from allocator.search import BaselineKeepingASHA

    uniform = {"u_a": 0.5, "u_b": 0.5}
    asha = BaselineKeepingASHA(
        lambda t: t.config == uniform,
        metric="objective",
        mode="max",
        time_attr="training_iteration",
        max_t=4,
        grace_period=1,
        reduction_factor=2,
    )
    good, base, bad = (
        Trial("f", config=c, stub=True) for c in ({"u_a": 0.9, "u_b": 0.1}, uniform, {"u_a": 0.1, "u_b": 0.2})
    )
    for t in (good, base, bad):
        asha.on_trial_add(None, t)
    assert asha.on_trial_result(None, good, {"training_iteration": 1, "objective": 0.8}) == TrialScheduler.CONTINUE
    # below the cutoff the good trial set: plain ASHA stops it, this one keeps the baseline
    assert asha.on_trial_result(None, base, {"training_iteration": 1, "objective": 0.2}) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, bad, {"training_iteration": 1, "objective": 0.3}) == TrialScheduler.STOP
    assert asha._num_stopped == 1
