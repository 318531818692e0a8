"""Held-out split and nested sampling of user-data pools (pure functions)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator.data import DataError, Record, Turn, content_hash, split_pools, take


def rec(i: int, ability: str = "a", prompt: str | None = None) -> Record:
    return Record((Turn("user", prompt or f"question {i}"), Turn("assistant", f"answer {i}")), ability, "f", i)


def test_split_is_deterministic_disjoint_and_sized():
    data = {"a": [rec(i) for i in range(50)], "b": [rec(i, "b") for i in range(20)]}
    p1 = split_pools(data, seed=0, heldout_size=5)
    p2 = split_pools(data, seed=0, heldout_size=5)
    p3 = split_pools(data, seed=1, heldout_size=5)
    assert p1 == p2 and p1["a"].heldout != p3["a"].heldout
    for pool in p1.values():
        assert len(pool.heldout) == 5
        assert not set(pool.heldout) & set(pool.train)
    assert len(p1["a"].train) == 45
    frac = split_pools(data, seed=0, heldout_fraction=0.1)
    assert (len(frac["a"].heldout), len(frac["b"].heldout)) == (5, 2)


def test_exact_and_normalized_duplicates_of_heldout_are_removed_from_training():
    base = [rec(i) for i in range(30)]
    pools = split_pools({"a": base}, seed=0, heldout_size=3)
    held = pools["a"].heldout[0]
    exact = Record(held.turns, "a", "f", 100)
    loose = Record(tuple(Turn(t.role, "  " + t.content.upper() + " ") for t in held.turns), "a", "f", 101)
    pools = split_pools({"a": [*base, exact, loose]}, seed=0, heldout_size=3)
    assert pools["a"].duplicates_removed == 2
    keys = {tuple((t.role, t.content.casefold().strip()) for t in r.turns) for r in pools["a"].heldout}
    assert not any(tuple((t.role, t.content.casefold().strip()) for t in r.turns) in keys for r in pools["a"].train)


def test_too_few_examples_for_the_heldout_size():
    with pytest.raises(DataError, match=r"ability 'a': 3 examples, not more than its held-out size 3"):
        split_pools({"a": [rec(i) for i in range(3)]}, seed=0, heldout_size=3)


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(10, 60),
    a=st.integers(0, 150),
    b=st.integers(0, 150),
    seed=st.integers(0, 10_000),
    repeats=st.integers(1, 3),
)
def test_nested_sampling(size, a, b, seed, repeats):
    a, b = min(a, b), max(a, b)
    pool = split_pools({"a": [rec(i) for i in range(size)]}, seed=seed, heldout_size=2)["a"]
    cap = len(pool.train) * repeats
    if b > cap:
        with pytest.raises(DataError, match="max_repeats"):
            take(pool, b, max_repeats=repeats)
        return
    small, large = take(pool, a, max_repeats=repeats), take(pool, b, max_repeats=repeats)
    assert large[:a] == small  # the first a examples are those of any larger count
    assert len(large) == b
    again = split_pools({"a": [rec(i) for i in range(size)]}, seed=seed, heldout_size=2)["a"]
    assert content_hash(take(again, b, max_repeats=repeats)) == content_hash(large)


def test_hash_changes_with_content_and_order():
    xs = [rec(i) for i in range(3)]
    assert content_hash(xs) == content_hash(list(xs))
    assert content_hash(xs) != content_hash(xs[::-1])
    assert content_hash(xs) != content_hash([*xs[:2], rec(9)])
