"""The confirmation's statistics (allocator.studies.evidence) and the proportional baseline
(allocator.mixture.proportional_counts): checked against scipy and hand computations."""

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from allocator.mixture import proportional_counts, uniform_counts
from allocator.studies.evidence import holm, paired_comparison, rank_agreement


def test_a_paired_comparison_is_scipy_s_paired_t_test_with_its_interval():
    a = [0.31, 0.35, 0.29, 0.33, 0.36]
    b = [0.28, 0.30, 0.27, 0.31, 0.30]
    got = paired_comparison(a, b)
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(diffs) / 5
    assert got["mean_difference"] == pytest.approx(mean)
    assert got["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    se = stats.tstd(diffs) / math.sqrt(5)
    half = stats.t.ppf(0.975, 4) * se
    assert got["ci"] == pytest.approx([mean - half, mean + half])
    assert got["relative"] == pytest.approx(mean / (sum(b) / 5))
    assert got["ci"][0] > 0 and got["p"] < 0.05  # a consistent gain


def test_no_spread_or_one_pair_is_no_evidence():
    same = paired_comparison([0.3, 0.4], [0.2, 0.3])  # the same difference twice: no variance
    assert same["mean_difference"] == pytest.approx(0.1) and math.isnan(same["p"]) and math.isnan(same["ci"][0])
    assert math.isnan(paired_comparison([0.3], [0.2])["p"])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_comparison([0.1, 0.2], [0.1])


def test_holm_adjusts_step_down_and_stays_monotone():
    got = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005, "e": math.nan})
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, then max(0.06, 0.04)
    assert got["d"] == pytest.approx(0.02) and got["a"] == pytest.approx(0.03)
    assert got["c"] == pytest.approx(0.06) and got["b"] == pytest.approx(0.06)
    assert math.isnan(got["e"])


@given(st.dictionaries(st.text(min_size=1, max_size=3), st.floats(0, 1), min_size=1, max_size=12))
def test_holm_never_lowers_a_p_value_and_keeps_their_order(ps):
    adj = holm(ps)
    assert all(p <= adj[k] <= 1.0 for k, p in ps.items())
    order = sorted(ps, key=ps.__getitem__)
    assert all(adj[x] <= adj[y] for x, y in itertools.pairwise(order))


def test_rank_agreement_against_scipy_with_a_bootstrap_interval():
    proxy = {"m1": 0.10, "m2": 0.20, "m3": 0.25, "m4": 0.40, "m5": 0.38, "m6": 0.05}
    target = {"m1": 0.12, "m2": 0.18, "m3": 0.30, "m4": 0.35, "m5": 0.41, "m6": 0.07}
    got = rank_agreement(proxy, target, draws=400, seed=1)
    names = list(proxy)
    x, y = [proxy[k] for k in names], [target[k] for k in names]
    assert got["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert got["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic)
    assert got["n"] == 6
    lo, hi = got["spearman_ci"]
    assert lo <= got["spearman"] <= hi <= 1.0 and lo < hi
    assert rank_agreement(proxy, target, draws=400, seed=1) == got  # seeded
    perfect = rank_agreement(proxy, proxy, draws=100)
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["kendall"] == pytest.approx(1.0)
    assert perfect["spearman_ci"] == pytest.approx([1.0, 1.0])
    reverse = rank_agreement(proxy, {k: -v for k, v in proxy.items()}, draws=100)
    assert reverse["spearman"] == pytest.approx(-1.0) and reverse["kendall"] == pytest.approx(-1.0)


def test_rank_agreement_needs_three_mixtures():
    got = rank_agreement({"a": 0.1, "b": 0.2}, {"a": 0.3, "b": 0.1, "c": 0.2})
    assert got["n"] == 2 and math.isnan(got["spearman"]) and math.isnan(got["kendall_ci"][0])


def test_the_proportional_mixture_follows_pool_sizes_and_is_uniform_when_they_are_equal():
    sizes = {"big": 6000, "mid": 3000, "small": 1000}
    got = proportional_counts(sizes, 1000)
    assert got == {"big": 600, "mid": 300, "small": 100}
    capped = proportional_counts(sizes, 1000, caps={"big": 400, "mid": 3000, "small": 1000})
    assert capped["big"] == 400 and sum(capped.values()) == 1000 and capped["mid"] == 3 * capped["small"]
    equal = {a: 2000 for a in ("first", "copy", "upper")}
    assert proportional_counts(equal, 1000) == uniform_counts(list(equal), 1000)
