"""Bootstrap confidence intervals and paired differences between variants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    """Bounds of the 95% percentile bootstrap interval."""


@dataclass(frozen=True)
class Difference:
    mean: float
    """Mean of b - a over the same examples."""
    low: float
    high: float
    p_value: float
    """Two-sided paired bootstrap p-value for 'no difference'."""


def bootstrap(values: Sequence[float], samples: int = 2000, seed: int = 0) -> Estimate:
    """Mean with a 95% percentile bootstrap interval."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(samples, x.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Estimate(float(x.mean()), float(low), float(high))


def paired_difference(a: Sequence[float], b: Sequence[float], samples: int = 2000, seed: int = 0) -> Difference:
    """b - a on the same examples: mean, 95% interval and p-value from a paired bootstrap."""
    import numpy as np

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired scores need equal lengths, got {x.size} and {y.size}")
    d = y - x
    if d.size == 0:
        return Difference(float("nan"), float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(samples, d.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    # Shift the resampled means to the null (mean zero) and count as extreme outcomes.
    p = float(np.mean(np.abs(means - d.mean()) >= abs(d.mean())))
    return Difference(float(d.mean()), float(low), float(high), max(p, 1.0 / samples))


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
