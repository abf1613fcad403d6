"""Bootstrap confidence intervals and paired differences between pipelines, resampled the
way the test set was sampled; Holm's multiplicity adjustment; the smallest detectable difference.

Test questions come in clusters (a document's questions, a database's queries) that
succeed or fail together, so the bootstrap resamples whole clusters when `groups` names
each example's cluster; without it every example is its own cluster. Scores of a
pipeline trained with several seeds come as one row per seed, and each resample also
draws the seeds (with replacement), so the interval includes seed-to-seed variation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

Scores = Sequence[float] | Sequence[Sequence[float]]
"""One score per example, or one row of them per training seed."""

ALPHA = 0.05
"""Two-sided (family-wise, for Holm-adjusted p-values) significance level the report reads."""
POWER = 0.8


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    """Bounds of the 95% percentile bootstrap interval."""
    se: float = float("nan")
    """Standard deviation of the resampled means."""
    clusters: int = 0
    """Units resampled: clusters, or examples when each is its own."""
    seeds: int = 1
    """Training seeds the mean and interval are taken over."""


@dataclass(frozen=True)
class Difference:
    mean: float
    """Mean of b - a over the same examples."""
    low: float
    high: float
    p_value: float
    """Two-sided paired bootstrap p-value for 'no difference'."""
    se: float = float("nan")
    """Standard deviation of the resampled differences."""
    detectable: float = float("nan")
    """Smallest true difference this test finds 80% of the time at alpha 0.05 (two-sided)."""


def _matrix(values: Scores) -> np.ndarray:
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    return x.reshape(1, -1) if x.ndim == 1 else x


def _clusters(n: int, groups: Sequence[str] | None) -> tuple[np.ndarray, int]:
    """Each example's cluster number (in order of first appearance) and the number of clusters."""
    import numpy as np

    if groups is None:
        return np.arange(n), n
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} examples")
    number: dict[str, int] = {}
    codes = np.array([number.setdefault(str(g), len(number)) for g in groups], dtype=np.int64)
    return codes, len(number)


def resampled_means(
    rows: Sequence[Scores], groups: Sequence[str] | None = None, samples: int = 2000, seed: int = 0
) -> np.ndarray:
    """Bootstrap means of several pipelines' scores on the same examples, shape (pipelines, samples).

    Every pipeline is resampled with the same clusters (so differences are paired); a
    pipeline with several seed rows also draws its seeds with replacement in each resample.
    """
    import numpy as np

    matrices = [_matrix(r) for r in rows]
    n = matrices[0].shape[1]
    if any(m.shape[1] != n for m in matrices):
        raise ValueError(f"paired scores need equal lengths, got {[m.shape[1] for m in matrices]}")
    codes, g = _clusters(n, groups)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, g, size=(samples, g))
    sizes = np.bincount(codes, minlength=g)[picks].sum(axis=1)
    out = np.empty((len(matrices), samples))
    for j, m in enumerate(matrices):
        sums = np.stack([np.bincount(codes, weights=row, minlength=g) for row in m])  # (seeds, clusters)
        if len(sums) == 1:
            out[j] = sums[0][picks].sum(axis=1) / sizes
            continue
        seeds = rng.integers(0, len(sums), size=(samples, len(sums)))
        drawn = np.zeros(samples)
        for s in range(len(sums)):
            drawn += np.take_along_axis(sums[seeds[:, s]], picks, axis=1).sum(axis=1)
        out[j] = drawn / len(sums) / sizes
    return out


def bootstrap(values: Scores, samples: int = 2000, seed: int = 0, groups: Sequence[str] | None = None) -> Estimate:
    """Mean with a 95% percentile bootstrap interval, resampling the clusters `groups` names."""
    import numpy as np

    x = _matrix(values)
    if x.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    means = resampled_means([x], groups, samples, seed)[0]
    low, high = np.percentile(means, [2.5, 97.5])
    clusters = _clusters(x.shape[1], groups)[1]
    return Estimate(float(x.mean()), float(low), float(high), float(means.std(ddof=1)), clusters, len(x))


def paired_difference(
    a: Scores, b: Scores, samples: int = 2000, seed: int = 0, groups: Sequence[str] | None = None
) -> Difference:
    """b - a on the same examples: mean, 95% interval and p-value from a paired bootstrap
    that resamples the clusters `groups` names, and the smallest difference it can detect."""
    import numpy as np

    x, y = _matrix(a), _matrix(b)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"paired scores need equal lengths, got {x.shape[1]} and {y.shape[1]}")
    if x.size == 0:
        return Difference(float("nan"), float("nan"), float("nan"), float("nan"))
    resampled = resampled_means([x, y], groups, samples, seed)
    means = resampled[1] - resampled[0]
    mean = float(y.mean() - x.mean())
    low, high = np.percentile(means, [2.5, 97.5])
    # Shift the resampled means to the null (mean zero) and count as extreme outcomes.
    p = float(np.mean(np.abs(means - mean) >= abs(mean)))
    se = float(means.std(ddof=1))
    return Difference(mean, float(low), float(high), max(p, 1.0 / samples), se, detectable(se))


def detectable(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference a two-sided test at `alpha` detects with probability
    `power`, given the standard error of the estimated difference (normal approximation)."""
    z = NormalDist()
    return (z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)) * se


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the family-wise error stays at most alpha when each
    adjusted p-value is compared with alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def mcnemar(a: Sequence[float], b: Sequence[float]) -> tuple[int, int, float]:
    """Exact McNemar test on paired 0/1 outcomes.

    Returns (a right and b wrong, a wrong and b right, two-sided p-value): the discordant
    pairs are binomial(n, 1/2) under 'no difference'.
    """
    from math import comb

    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    only_a = sum(1 for x, y in zip(a, b) if x >= 0.5 > y)
    only_b = sum(1 for x, y in zip(a, b) if y >= 0.5 > x)
    n = only_a + only_b
    if n == 0:
        return only_a, only_b, 1.0
    tail = sum(comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return only_a, only_b, min(1.0, 2 * tail)
