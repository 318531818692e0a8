"""The confirmation's statistics (allocator.studies.evidence), the proportional baseline
(allocator.mixture.proportional_counts) and which of an optimization's mixtures a confirmation
trains (allocator.studies.candidates): checked against scipy and hand computations."""

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


def test_comparisons_to_each_reference_are_one_holm_family():
    from allocator.studies.evidence import compare_to_references, holm, paired_comparison

    values = {"uniform": [0.40, 0.41, 0.39], "proportional": [0.42, 0.40, 0.41], "top1": [0.45, 0.47, 0.44]}
    out = compare_to_references(values, ["uniform", "proportional"])
    assert set(out) == {"uniform", "proportional"}
    assert set(out["uniform"]) == {"proportional", "top1"} and set(out["proportional"]) == {"uniform", "top1"}
    raw = {f"{r}/{n}": c["p"] for r, cs in out.items() for n, c in cs.items()}
    adjusted = holm(raw)
    for r, cs in out.items():
        for n, c in cs.items():
            assert c == {**paired_comparison(values[n], values[r]), "p_holm": adjusted[f"{r}/{n}"]}
            assert c["p_holm"] >= c["p"]


def test_the_champion_moves_only_when_beaten_on_the_same_seeds_and_target():
    from allocator.studies.evidence import choose_champion, paired_comparison

    means = {"uniform": 0.40, "top1": 0.46, "champion": 0.44}
    # no champion yet: the best takes the alias
    assert choose_champion(means, current=None, retrained_alike=False, best_vs_current=None)[0] == "top1"
    # not retrained alike (other seeds, another target, or not retrained at all): it stays
    name, why = choose_champion(means, current="champion", retrained_alike=False, best_vs_current=None)
    assert name is None and "stays" in why
    # retrained and still the best: it stays
    name, _ = choose_champion(
        {**means, "champion": 0.5}, current="champion", retrained_alike=True, best_vs_current=None
    )
    assert name is None
    # beaten by the paired test: it moves; beaten in the mean only (inside the noise): it stays
    clear = paired_comparison([0.46, 0.47, 0.45], [0.44, 0.445, 0.435])
    assert choose_champion(means, current="champion", retrained_alike=True, best_vs_current=clear)[0] == "top1"
    noisy = paired_comparison([0.46, 0.40, 0.52], [0.44, 0.45, 0.43])
    name, why = choose_champion(means, current="champion", retrained_alike=True, best_vs_current=noisy)
    assert name is None and "did not beat" in why


def _trial(name, objective, mixture, kind="search", status="FINISHED", violations=()):
    return {
        "name": name,
        "kind": kind,
        "status": status,
        "objective": objective,
        "mixture": mixture,
        "violations": list(violations),
    }


def test_an_optimizations_top_mixtures_and_spread_out_ones():
    from allocator.errors import UserError
    from allocator.studies.candidates import from_search, search_mixtures

    trials = [
        _trial("uniform-baseline", 0.30, {"a": 5, "b": 5}, kind="baseline"),
        _trial("t1", 0.50, {"a": 8, "b": 2}),
        _trial("t2", 0.49, {"b": 2, "a": 8}),  # the same counts as t1: not a second mixture
        _trial("t3", 0.45, {"a": 6, "b": 4}),
        _trial("t4", 0.60, {"a": 10, "b": 0}, violations=["b"]),  # below the floor: never a top one
        _trial("t5", 0.20, {"a": 0, "b": 10}),
        _trial("t6", None, {"a": 1, "b": 9}, status="FAILED"),
        _trial("t7", 0.35, {"a": 3, "b": 7}),
    ]
    mixtures, estimates = from_search(trials, 2)
    assert mixtures == {
        "top1": {"a": 8, "b": 2},
        "top2": {"a": 6, "b": 4},
        "median": {"a": 3, "b": 7},  # of t4, t7, t5 (the searched ones left, best first)
        "worst": {"a": 0, "b": 10},
    }
    assert estimates["top1"] == {"objective": 0.50, "trial": "t1"} and estimates["worst"]["trial"] == "t5"
    with pytest.raises(UserError, match="--top 5: the optimization has 4 distinct finished searched mixtures"):
        from_search(trials, 5)
    # without an explicit --top, as many as there are (up to the default), and the search's uniform
    mixtures, estimates = search_mixtures({"trials": trials}, 5, explicit=False)
    assert [n for n in mixtures if n.startswith("top")] == ["top1", "top2", "top3", "top4"]
    assert estimates["uniform"] == {"objective": 0.30, "trial": "uniform-baseline"}
