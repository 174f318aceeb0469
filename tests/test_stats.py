"""Statistics against values computed independently on fixed numbers."""

import math

import numpy as np
import pytest
from scipy import stats

from regexp.stats import holm, mean_ci, paired

X = [0.84, 0.87, 0.85, 0.83, 0.88, 0.86]


def test_mean_ci_is_the_t_interval():
    mean, low, high = mean_ci(X)
    # by hand: mean 0.855, sd = sqrt(0.00175 / 5) = 0.018708, t(0.975, 5) = 2.570582
    assert mean == pytest.approx(0.855)
    half = 2.5705818366 * math.sqrt(0.00175 / 5) / math.sqrt(6)
    assert (low, high) == pytest.approx((0.855 - half, 0.855 + half), rel=1e-9)
    assert math.isnan(mean_ci([0.9])[1])


def test_paired_comparison_matches_scipy_and_a_hand_computation():
    a = [0.87, 0.88, 0.85, 0.86, 0.90, 0.84, 0.89]
    b = [0.85, 0.85, 0.85, 0.84, 0.86, 0.85, 0.86]
    r = paired(a, b)
    d = np.subtract(a, b)  # 0.02 0.03 0 0.02 0.04 -0.01 0.03
    assert r.n == 7 and r.mean_diff == pytest.approx(0.13 / 7)
    assert r.d_z == pytest.approx(d.mean() / d.std(ddof=1))
    t = d.mean() / (d.std(ddof=1) / math.sqrt(7))
    assert r.p_t == pytest.approx(2 * stats.t.sf(abs(t), 6), rel=1e-9)
    assert r.p_wilcoxon == pytest.approx(stats.wilcoxon(d).pvalue)
    assert r.low < r.mean_diff < r.high and r.low > 0  # a real improvement here


def test_paired_with_identical_runs():
    r = paired([0.8, 0.9, 0.7], [0.8, 0.9, 0.7])
    assert (r.mean_diff, r.p_t, r.p_wilcoxon) == (0.0, 1.0, 1.0)


def test_holm_by_hand():
    # sorted 0.005 0.01 0.03 0.04 -> x4 x3 x2 x1 = 0.02 0.03 0.06 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    got = holm([0.02, math.nan])
    assert got[0] == pytest.approx(0.02) and math.isnan(got[1])
