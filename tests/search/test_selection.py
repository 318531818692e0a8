"""Choosing what a search recommends, on records made by hand: the floor, the best eligible
trial, what early stopping saved; and the ASHA that never stops the baseline."""

from allocator.search.selection import choose_best, compute_stats, mark_floor
from allocator.trial.record import Status, TrialRecord


def _rec(name, kind, scores, status=Status.FINISHED, steps=10, steps_total=10, objective=None):
    r = TrialRecord(name, name, kind, {a: 1 for a in scores}, status=status)
    r.objective = sum(scores.values()) if objective is None else objective
    r.scores, r.steps, r.steps_total = scores, steps, steps_total
    return r


def test_a_trial_below_the_floor_is_reported_marked_and_never_the_best():
    base = _rec("uniform-baseline", "baseline", {"a": 0.5, "b": 0.5})
    ok = _rec("trial-001", "search", {"a": 0.9, "b": 0.45})
    low = _rec("trial-002", "search", {"a": 1.0, "b": 0.3}, objective=5.0)  # the best objective by far
    lines = []
    mark_floor([base, ok, low], base, 0.1, lines.append)
    assert ok.violations == [] and low.violations == ["b"] and base.violations == []
    assert lines[0].startswith("floor (0.1 below the uniform mixture's score): 1 trials violate it")
    assert lines[1] == "  trial-002: b 0.300 < 0.400"
    assert choose_best([base, ok, low], base) is ok
    # every searched trial breaks the floor: the uniform mixture is the recommendation
    ok.violations = ["a"]
    assert choose_best([base, ok, low], base) is base


def test_a_trial_stopped_early_or_failed_is_never_the_best():
    base = _rec("uniform-baseline", "baseline", {"a": 0.5})
    stopped = _rec("trial-001", "search", {"a": 0.9}, status=Status.EARLY_STOPPED)
    failed = _rec("trial-002", "search", {"a": 0.95}, status=Status.FAILED)
    done = _rec("trial-003", "search", {"a": 0.2})
    assert choose_best([base, stopped, failed, done], base) is done


def test_compute_stats_counts_what_early_stopping_saved():
    recs = [
        _rec("u", "baseline", {"a": 0.5}),
        _rec("t1", "search", {"a": 0.1}, status=Status.EARLY_STOPPED, steps=5),
        _rec("t2", "search", {"a": 0.6}),
        _rec("t3", "search", {"a": 0.0}, status=Status.FAILED, steps=None, steps_total=None),
        # a smaller mixture (multi-objective) trains fewer steps by design: nothing saved there
        _rec("t4", "search", {"a": 0.4}, steps=6, steps_total=6),
    ]
    s = compute_stats(recs)
    assert s == {"early_stopped": 1, "steps_trained": 31, "steps_without_early_stopping": 36, "compute_saved": 0.1389}


def test_asha_never_stops_the_baseline_but_it_sets_the_cutoff():
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from allocator.search.extensions import BaselineKeepingASHA

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
    assert asha.stopped == 1
