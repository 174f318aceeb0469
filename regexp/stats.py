"""Statistics for telling an effect from noise across seeds, valid for few seeds.

Two groups' runs are paired by (seed, split): ``d = a - b``, one difference per pair.

- ``mean_ci``: the mean and its two-sided t interval, ``mean ± t(0.975, n-1) s / sqrt(n)``:
  the size of an effect (it decides no verdict).
- ``sign_flip``: the paired sign-flip permutation test of the mean difference, the test that
  decides a verdict. Under its null the differences are symmetric about 0, so each of the
  ``2^k`` sign patterns of the ``k`` non-zero differences is equally likely; the p-value is
  the share of patterns whose sum is at least as extreme as the one observed. Enumerated
  exactly up to ``EXACT`` non-zero pairs, sampled beyond (``SAMPLES`` patterns drawn under a
  fixed seed, ``p = (1 + hits) / (1 + SAMPLES)``, which is valid). It holds at any n, with
  ties, zero variance and the steps of accuracy: ``n`` equal non-zero differences give
  ``p = 2 / 2^n``, never 0.
- ``equivalence``: two one-sided sign-flip tests (TOST) that the mean difference lies
  within ``±delta``; its p-value is the larger of the two.
- ``smallest_p`` and ``seeds_for``: the smallest p any outcome of n pairs can reach, and the
  fewest pairs at which a family of m tests can reach a level at all.
- ``power``: the smallest effect a paired design detects at 80 % power, and the pairs it
  takes to detect a given effect (the paired t-test's power: statsmodels' ``TTestPower``).
- ``shaffer``: Holm's step-down adjustment, with Shaffer's refinement for hypotheses of
  which at most one per comparison can be true (a difference test and an equivalence test
  of the same comparison); ``holm`` is the case of one hypothesis per comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
POWER = 0.8
EXACT = 20  # non-zero pairs up to which the sign-flip test enumerates all 2^k patterns
SAMPLES = 100_000  # patterns drawn beyond, under SAMPLE_SEED
SAMPLE_SEED = 0
ALTERNATIVES = ("two-sided", "greater", "less")


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


def _null_sums(magnitudes: np.ndarray) -> np.ndarray:
    """The sum ``sum(±|d_i|)`` under every one of the ``2^k`` sign patterns."""
    sums = np.zeros(1)
    for m in magnitudes:
        sums = np.concatenate((sums + m, sums - m))
    return sums


def _sampled_sums(magnitudes: np.ndarray, samples: int) -> np.ndarray:
    rng = np.random.default_rng(SAMPLE_SEED)
    out = np.empty(samples)
    for start in range(0, samples, 10_000):
        stop = min(samples, start + 10_000)
        signs = rng.integers(0, 2, size=(stop - start, len(magnitudes))) * 2 - 1
        out[start:stop] = signs @ magnitudes
    return out


def sign_flip(d, alternative: str = "two-sided", exact_up_to: int = EXACT,
              samples: int = SAMPLES) -> tuple[float, bool]:  # fmt: skip
    """``(p, exact)``: the paired sign-flip test of ``mean(d) = 0`` against ``alternative``
    (``greater``: the mean is above 0). Zeros carry no sign and are left out of the
    patterns (that changes no share). ``exact`` is False when the patterns were sampled."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative={alternative!r}; expected one of {ALTERNATIVES}")
    d = np.asarray(d, dtype=float)
    d = d[d != 0]
    if len(d) == 0:
        return 1.0, True
    observed = float(d.sum())
    magnitudes = np.abs(d)
    gamma = 1e-12 * float(magnitudes.sum())  # sums equal but for rounding count as ties
    exact = len(d) <= exact_up_to
    null = _null_sums(magnitudes) if exact else _sampled_sums(magnitudes, samples)
    if alternative == "two-sided":
        hits = np.abs(null) >= abs(observed) - gamma
    elif alternative == "greater":
        hits = null >= observed - gamma
    else:
        hits = null <= observed + gamma
    if exact:
        return float(hits.mean()), True
    return float((1 + hits.sum()) / (1 + len(null))), False


def equivalence(d, delta: float, exact_up_to: int = EXACT) -> float:
    """TOST: the p-value that the mean difference lies within ``±delta``, the larger of the
    sign-flip tests of ``mean < delta`` (on ``d - delta``) and ``mean > -delta`` (on
    ``d + delta``). NaN without a positive ``delta``."""
    if not (delta > 0):
        return math.nan
    d = np.asarray(d, dtype=float)
    below, _ = sign_flip(d - delta, "less", exact_up_to)
    above, _ = sign_flip(d + delta, "greater", exact_up_to)
    return max(below, above)


def smallest_p(n: int, alternative: str = "two-sided") -> float:
    """The smallest p-value the sign-flip test can give for ``n`` non-zero pairs:
    ``2 / 2^n`` two-sided, ``1 / 2^n`` one-sided (and so for TOST)."""
    if n < 1:
        return 1.0
    return 2.0 ** (1 - n) if alternative == "two-sided" else 2.0**-n


def seeds_for(alpha: float = ALPHA, tests: int = 1, alternative: str = "two-sided") -> int:
    """The fewest pairs at which a family of ``tests`` Holm-adjusted sign-flip tests can
    reach ``alpha`` at all: ``tests * smallest_p(n) <= alpha`` (6 for one two-sided test
    at 0.05; 9 for 12 tests)."""
    n = 1
    while tests * smallest_p(n, alternative) > alpha:
        n += 1
    return n


@dataclass(frozen=True)
class Power:
    detectable: float  # the smallest |mean difference| detected with POWER at n pairs
    seeds: float  # the pairs it takes to detect ``effect`` (inf when it never is)


def power(sd: float, n: int, effect: float, alpha: float = ALPHA) -> Power:
    """The paired design's power at a two-sided level ``alpha``, from the sd of the
    differences (``statsmodels.stats.power.TTestPower``, the noncentral t): the smallest
    effect detected with ``POWER`` at ``n`` pairs, and the pairs needed for ``effect``.
    NaN where the sd is 0 or unknown: then only the number of pairs limits the test."""
    from statsmodels.stats.power import TTestPower

    if not (sd > 0) or n < 2 or not math.isfinite(sd):
        return Power(math.nan, math.nan)
    solver = TTestPower()
    detectable = float(solver.solve_power(nobs=n, alpha=alpha, power=POWER)) * sd
    if not (effect > 0):
        return Power(detectable, math.nan)
    try:
        seeds = float(solver.solve_power(effect_size=effect / sd, alpha=alpha, power=POWER))
    except (ValueError, RuntimeError):  # no solution in statsmodels' bracket
        seeds = math.inf
    return Power(detectable, math.ceil(max(seeds, 2.0)) if math.isfinite(seeds) else math.inf)


@dataclass(frozen=True)
class Paired:
    n: int
    mean_diff: float
    low: float  # the t interval of the mean difference
    high: float
    sd: float  # of the differences
    p: float  # the two-sided sign-flip test of mean(d) = 0
    exact: bool  # whether ``p`` enumerated every sign pattern
    p_equivalence: float  # TOST at ±min_effect; NaN without one
    min_effect: float
    p_t: float  # the paired t-test's, for reference only (NaN when sd is 0)
    d_z: float  # mean(d) / sd(d); NaN when sd is 0


def paired(a, b, min_effect: float = math.nan, level: float = 0.95) -> Paired:
    """Compare ``a`` with ``b``, element by element (same seed and split): ``d = a - b``."""
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(d)
    mean, low, high = mean_ci(d, level)
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    if n == 0:
        return Paired(0, mean, low, high, sd, math.nan, True, math.nan, min_effect, math.nan,
                      math.nan)  # fmt: skip
    p, exact = sign_flip(d)
    p_eq = equivalence(d, min_effect)
    p_t = float(stats.ttest_rel(a, b).pvalue) if sd > 0 else math.nan
    return Paired(n, mean, low, high, sd, p, exact, p_eq, min_effect, p_t,
                  mean / sd if sd > 0 else math.nan)  # fmt: skip


def shaffer(pvalues: Sequence[float], comparisons: Sequence) -> list[float]:
    """Step-down adjusted p-values, in the order given (NaN stays NaN). ``comparisons``
    names each hypothesis' comparison; at most one hypothesis of a comparison can be true.
    Sorted ascending, the j-th p-value is multiplied by the number of comparisons that
    still have a hypothesis at or after it (the most true hypotheses possible once those
    before it are rejected: Shaffer's S1), and the adjusted values are kept monotone. With
    one hypothesis per comparison this is Holm's method."""
    p = np.asarray(pvalues, dtype=float)
    owners = list(comparisons)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.full(len(p), math.nan)
    running = 0.0
    for rank, i in enumerate(order):
        remaining = len({owners[j] for j in order[rank:]})
        running = max(running, min(1.0, remaining * p[i]))
        adjusted[i] = running
    return [float(v) for v in adjusted]


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given (NaN stays NaN)."""
    return shaffer(pvalues, range(len(pvalues)))
