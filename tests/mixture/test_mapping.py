import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator.mixture import counts_from_point, counts_from_weights, point_from_counts, uniform_counts, uniform_point

NAMES = ["a", "b", "c", "d", "e", "f", "g"]


@st.composite
def problems(draw):
    k = draw(st.integers(2, 7))
    names = NAMES[:k]
    caps = {n: draw(st.integers(0, 500)) for n in names}
    budget = draw(st.integers(0, sum(caps.values())))
    point = {n: draw(st.floats(0.0, 1.0)) for n in names}
    return point, budget, caps


@settings(max_examples=400, deadline=None)
@given(problems())
def test_counts_sum_to_budget_never_negative_within_caps(problem):
    point, budget, caps = problem
    counts = counts_from_point(point, budget, caps)
    assert set(counts) == set(point)
    assert sum(counts.values()) == budget
    assert all(0 <= counts[n] <= caps[n] for n in counts)


@settings(max_examples=200, deadline=None)
@given(problems())
def test_uncapped_counts_are_proportional_within_one(problem):
    point, budget, _ = problem
    counts = counts_from_point(point, budget)
    w = {n: -math.log1p(-min(u, 1 - 1e-12)) for n, u in point.items()}
    total = sum(w.values())
    for n in point:
        ideal = budget * w[n] / total if total > 0 else budget / len(point)
        assert abs(counts[n] - ideal) < 1.0 + 1e-6


def test_uniform_point_gives_equal_counts():
    assert counts_from_point(uniform_point(NAMES), 700) == dict.fromkeys(NAMES, 100)
    assert uniform_counts(NAMES[:3], 10) == {"a": 4, "b": 3, "c": 3}
    assert counts_from_point(dict.fromkeys(NAMES[:2], 0.0), 10) == {"a": 5, "b": 5}


def test_caps_push_the_excess_to_the_others_in_proportion():
    counts = counts_from_weights({"a": 1.0, "b": 1.0, "c": 2.0}, 100, {"a": 10, "b": 1000, "c": 1000})
    assert counts == {"a": 10, "b": 30, "c": 60}


def test_budget_beyond_capacity_is_refused():
    with pytest.raises(ValueError, match="exceeds the total capacity"):
        counts_from_weights({"a": 1.0, "b": 1.0}, 11, {"a": 5, "b": 5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        counts_from_point({"a": 1.5, "b": 0.2}, 10)


def test_uniform_points_sample_the_simplex_uniformly():
    # flat Dirichlet on k=4: each proportion has mean 1/4 and variance (k-1)/(k^2 (k+1)) = 0.0375
    rng = random.Random(0)
    shares = []
    for _ in range(4000):
        c = counts_from_point({n: rng.random() for n in NAMES[:4]}, 100_000)
        shares.append(c["a"] / 100_000)
    mean = sum(shares) / len(shares)
    var = sum((s - mean) ** 2 for s in shares) / len(shares)
    assert abs(mean - 0.25) < 0.01
    assert abs(var - 0.0375) < 0.004


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 600), min_size=2, max_size=8).filter(lambda c: sum(c) > 0))
def test_point_from_counts_maps_back_to_the_same_counts(counts):
    named = {f"x{i}": n for i, n in enumerate(counts)}
    point = point_from_counts(named)
    assert all(0.0 <= u < 1.0 for u in point.values())
    assert counts_from_point(point, sum(counts), {a: 600 for a in named}) == named


def test_equal_counts_are_the_uniform_point():
    assert point_from_counts({"a": 5, "b": 5, "c": 5}) == pytest.approx(uniform_point(["a", "b", "c"]))
