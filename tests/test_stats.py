"""Statistics against independent references: scipy's exact routines, hand enumerations,
and constructed data whose answer is known."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from regexp.stats import (
    equivalence,
    holm,
    mean_ci,
    paired,
    power,
    seeds_for,
    shaffer,
    sign_flip,
    smallest_p,
)

X = [0.84, 0.87, 0.85, 0.83, 0.88, 0.86]
STEP = 1 / 450  # one digits test image


def test_mean_ci_is_the_t_interval():
    mean, low, high = mean_ci(X)
    # by hand: mean 0.855, sd = sqrt(0.00175 / 5) = 0.018708, t(0.975, 5) = 2.570582
    assert mean == pytest.approx(0.855)
    half = 2.5705818366 * math.sqrt(0.00175 / 5) / math.sqrt(6)
    assert (low, high) == pytest.approx((0.855 - half, 0.855 + half), rel=1e-9)
    assert math.isnan(mean_ci([0.9])[1])


def _by_hand(d, alternative):
    """Every sign pattern of every pair (zeros too), written out."""
    d = np.asarray(d, dtype=float)
    observed = d.sum()
    sums = [np.dot(signs, np.abs(d)) for signs in itertools.product((1, -1), repeat=len(d))]
    sums = np.array(sums)
    tol = 1e-9
    if alternative == "two-sided":
        return float(np.mean(np.abs(sums) >= abs(observed) - tol))
    if alternative == "greater":
        return float(np.mean(sums >= observed - tol))
    return float(np.mean(sums <= observed + tol))


@pytest.mark.parametrize("d", [
    [STEP, STEP],  # n=2, zero variance: 2 of 4 patterns are as extreme
    [STEP, 2 * STEP, -STEP],
    [0.0, STEP, STEP, 3 * STEP],  # a zero and ties
    [0.01, 0.02, -0.005, 0.015, 0.0, 0.01, 0.02],
    [-STEP] * 6,
])  # fmt: skip
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_sign_flip_equals_a_hand_enumeration_and_scipy(d, alternative):
    p, exact = sign_flip(d, alternative)
    assert exact
    assert p == pytest.approx(_by_hand(d, alternative), abs=1e-12)
    reference = stats.permutation_test((np.asarray(d),), np.mean, permutation_type="samples",
                                       n_resamples=np.inf, alternative=alternative)  # fmt: skip
    assert p == pytest.approx(reference.pvalue, abs=1e-12)


def test_sign_flip_of_ranks_is_the_exact_wilcoxon():
    d = np.array([0.013, -0.004, 0.021, 0.008, 0.017, -0.011, 0.026, 0.002, 0.019])
    signed_ranks = np.sign(d) * stats.rankdata(np.abs(d))
    for alternative in ("two-sided", "greater", "less"):
        wilcoxon = stats.wilcoxon(d, method="exact", alternative=alternative).pvalue
        assert sign_flip(signed_ranks, alternative)[0] == pytest.approx(wilcoxon, abs=1e-12)


def test_two_equal_differences_are_never_p_zero():
    p = paired([0.9 + STEP, 0.8 + STEP], [0.9, 0.8])
    assert p.p == 0.5 and p.sd == pytest.approx(0, abs=1e-12)  # the exact test's answer
    assert math.isnan(p.p_t) and math.isnan(p.d_z)  # no t-test of zero variance
    assert smallest_p(2) == 0.5 and seeds_for(0.05) == 6 and seeds_for(0.05, tests=12) == 9


def test_beyond_the_exact_limit_patterns_are_sampled_and_close_to_exact():
    d = np.random.default_rng(3).normal(0.004, 0.01, 22)
    exact, was_exact = sign_flip(d, exact_up_to=22)
    sampled, was = sign_flip(d)
    assert was_exact and not was
    assert sampled == pytest.approx(exact, abs=0.005)  # 100,000 samples: sd about 0.0015
    assert sign_flip(d) == (sampled, was)  # seeded: the same every time


def test_tost_on_constructed_data():
    inside = [0.001, -0.002, 0.0, 0.002, -0.001, 0.001, 0.0, -0.001]  # all within ±0.005
    # every d - delta is negative and every d + delta positive: both one-sided p are 1/2^n
    assert equivalence(inside, 0.005) == pytest.approx(1 / 2**8)
    assert equivalence(inside, 0.0005) > 0.05  # a margin inside the spread: not shown
    outside = [0.02, 0.03, 0.025, 0.018, 0.022, 0.03, 0.021, 0.027]
    assert equivalence(outside, 0.005) == 1.0
    assert math.isnan(equivalence(inside, 0.0))
    # the one-sided tests are scipy's on the shifted differences
    lower = stats.permutation_test((np.subtract(inside, 0.0005),), np.mean,
                                   permutation_type="samples", n_resamples=np.inf,
                                   alternative="less").pvalue  # fmt: skip
    upper = stats.permutation_test((np.add(inside, 0.0005),), np.mean, permutation_type="samples",
                                   n_resamples=np.inf, alternative="greater").pvalue  # fmt: skip
    assert equivalence(inside, 0.0005) == pytest.approx(max(lower, upper))


def test_power_is_the_noncentral_t():
    sd, n, alpha = 0.004, 10, 0.05
    got = power(sd, n, 0.005, alpha)
    df, critical = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)

    def at(effect, pairs):
        nc = effect / sd * math.sqrt(pairs)
        return stats.nct.sf(stats.t.ppf(1 - alpha / 2, pairs - 1), pairs - 1, nc) + stats.nct.cdf(
            -stats.t.ppf(1 - alpha / 2, pairs - 1), pairs - 1, nc)  # fmt: skip

    assert critical > 0 and df == 9
    assert at(got.detectable, n) == pytest.approx(0.8, abs=1e-4)
    assert at(0.005, got.seeds) >= 0.8 > at(0.005, got.seeds - 1)
    assert math.isnan(power(0.0, n, 0.005).detectable)  # zero variance: no estimate


def test_holm_by_hand():
    # sorted 0.005 0.01 0.03 0.04 -> x4 x3 x2 x1 = 0.02 0.03 0.06 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    got = holm([0.02, math.nan])
    assert got[0] == pytest.approx(0.02) and math.isnan(got[1])


def test_shaffer_counts_one_true_hypothesis_per_comparison():
    # comparisons a, b: a's difference p 0.01, a's equivalence p 0.6, b's 0.02 and 0.012.
    # sorted: 0.01 (a) x2 (a, b remain) = 0.02; 0.012 (b) x2 = 0.024; 0.02 (b) x2 = 0.04;
    # 0.6 (a) x1 = 0.6. Holm over four would multiply the first by 4.
    got = shaffer([0.01, 0.6, 0.02, 0.012], ["a", "a", "b", "b"])
    assert got == pytest.approx([0.02, 0.6, 0.04, 0.024])
    assert holm([0.01, 0.6, 0.02, 0.012])[0] == pytest.approx(0.04)
