"""Statistics for telling an effect from noise across seeds.

- ``mean_ci``: mean and two-sided t confidence interval, ``mean ± t(0.975, n-1) s / sqrt(n)``.
- ``paired``: runs paired by (seed, split); the differences' mean and t interval, the
  paired t-test and Wilcoxon signed-rank p-values, and Cohen's d_z = mean(d) / sd(d).
- ``holm``: Holm's step-down adjustment of p-values across the comparisons of one report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``; the interval is NaN for fewer than two values."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


@dataclass
class Paired:
    n: int
    mean_diff: float
    low: float
    high: float
    p_t: float
    p_wilcoxon: float
    d_z: float


def paired(a, b, level: float = 0.95) -> Paired:
    """Compare ``a`` with ``b``, element by element (same seed and split): ``d = a - b``."""
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(d)
    mean, low, high = mean_ci(d, level)
    if n < 2:
        return Paired(n, mean, low, high, math.nan, math.nan, math.nan)
    sd = float(d.std(ddof=1))
    if sd == 0:  # every pair differs by the same amount (often 0): no test is defined
        p = 1.0 if mean == 0 else 0.0
        return Paired(
            n, mean, mean, mean, p, p, math.nan if mean == 0 else math.copysign(math.inf, mean)
        )
    p_t = float(stats.ttest_rel(a, b).pvalue)
    p_w = 1.0 if not np.any(d) else float(stats.wilcoxon(d).pvalue)
    return Paired(n, mean, low, high, p_t, p_w, mean / sd)


def holm(pvalues) -> list[float]:
    """Holm-adjusted p-values, in the order given (NaN stays NaN)."""
    p = np.asarray(pvalues, dtype=float)
    valid = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), math.nan)
    order = valid[np.argsort(p[valid], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return [float(v) for v in adjusted]
