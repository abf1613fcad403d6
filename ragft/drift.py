"""Tests that a served pipeline's recent window has moved away from what it was built on.

Three kinds of drift, each a one-window test with a p-value:

- **questions** (`novelty_test`): a question's novelty is one minus its cosine similarity to
  the nearest reference (training) question. The window's mean novelty is compared with the
  novelty the reference questions have against the reference questions of *other*
  clusters (documents): a new question about a document the pipeline never trained on is
  what the reference predicts, not drift. The reference mean's own uncertainty counts, with
  the clusters as its sample size. (Measured on the handbook, whose test questions
  are about other documents than its training questions: a test against question-level
  exchangeability, such as MMD with permuted questions, flags every window of the test
  questions; this one keeps their false-alarm rate under 1%.)
- **retrieval** (`shift_test`): the retriever's top scores in the window against those of
  the pipeline's first window, a two-sided Mann-Whitney test (any retrieval method's scale).
- **quality** (`rate_test`): the down-rated share of the window's rated exchanges against the
  first window's, a one-sided Fisher exact test, with a Newcombe interval for the difference.

Tested repeatedly, window after window, a test at a fixed level would alert sooner or later
with no drift at all. So each kind gets a share alpha / 3 of the false-alarm budget, spent
over windows as `spent(alpha, k) = alpha / 3 * 6 / (pi^2 k^2)` for its k-th tested window:
the shares sum to alpha over any number of windows, so the chance that a monitor of an
unchanged pipeline ever raises an alert is at most alpha (union bound). The price is power
late in a long history; a large drift still gives p-values far below the spent level.

Pure numpy and the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

KINDS = ("questions", "retrieval", "quality")


def spent(alpha: float, k: int) -> float:
    """The level of one kind's k-th tested window (k from 1): alpha / 3 * 6 / (pi^2 k^2)."""
    return alpha / len(KINDS) * 6 / (math.pi**2 * k * k)


@dataclass(frozen=True)
class Test:
    """One window's test: the effect (window minus reference), its interval where one is
    given, and the p-value."""

    effect: float
    p: float
    low: float | None = None
    high: float | None = None


def novelty(vectors: np.ndarray, reference: np.ndarray, block: int = 4096) -> np.ndarray:
    """One minus each unit vector's largest cosine similarity to a reference unit vector."""
    out = np.empty(len(vectors), dtype=np.float64)
    for start in range(0, len(vectors), block):
        out[start : start + block] = 1.0 - (vectors[start : start + block] @ reference.T).max(axis=1)
    return out


def held_out_novelty(reference: np.ndarray, clusters: Sequence[str]) -> np.ndarray:
    """Each reference vector's novelty against the reference vectors of other clusters (each
    vector its own cluster where `clusters` are all distinct)."""
    names, labels = np.unique(np.asarray(clusters), return_inverse=True)
    if len(names) < 2:
        raise ValueError("held-out novelty needs reference questions from at least two clusters")
    out = np.empty(len(reference), dtype=np.float64)
    for start in range(0, len(reference), 1024):
        sims = reference[start : start + 1024] @ reference.T
        sims[labels[start : start + 1024, None] == labels[None, :]] = -np.inf
        out[start : start + 1024] = 1.0 - sims.max(axis=1)
    return out


NORMAL = NormalDist()


def novelty_test(window: Sequence[float], reference: Sequence[float], clusters: int) -> Test:
    """Is the window's mean novelty above the reference's held-out novelty? One-sided z-test
    of the window mean against the reference mean, the standard error counting both the
    window's size and the reference's `clusters`."""
    values, ref = np.asarray(window, dtype=float), np.asarray(reference, dtype=float)
    se = (float(ref.std(ddof=1)) or 1e-12) * math.sqrt(1 / len(values) + 1 / clusters)
    effect = float(values.mean() - ref.mean())
    return Test(effect, 1 - NORMAL.cdf(effect / se))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def shift_test(window: Sequence[float], baseline: Sequence[float]) -> Test:
    """Two-sided Mann-Whitney test (normal approximation, tie-corrected) of the window's
    values against the baseline's; the effect is the difference of medians."""
    a, b = np.asarray(window, dtype=float), np.asarray(baseline, dtype=float)
    n1, n2 = len(a), len(b)
    both = np.concatenate([a, b])
    u = float(_ranks(both)[:n1].sum() - n1 * (n1 + 1) / 2)
    _, counts = np.unique(both, return_counts=True)
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - float((counts**3 - counts).sum()) / (n * (n - 1)))
    effect = float(np.median(a) - np.median(b))
    if variance <= 0:
        return Test(effect, 1.0)
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(variance)
    return Test(effect, min(1.0, 2 * (1 - NORMAL.cdf(max(z, 0.0)))))


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def rate_test(down: int, rated: int, baseline_down: int, baseline_rated: int, level: float = 0.95) -> Test:
    """Is the window's down-rated share above the baseline's? One-sided Fisher exact test;
    the effect is the difference of shares with its Newcombe (hybrid Wilson) interval."""
    z = NORMAL.inv_cdf(0.5 + level / 2)
    p1, p2 = down / rated, baseline_down / baseline_rated
    l1, u1 = _wilson(down, rated, z)
    l2, u2 = _wilson(baseline_down, baseline_rated, z)
    low = p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Test(p1 - p2, _fisher_greater(down, rated, baseline_down, baseline_rated), low, high)


def _fisher_greater(a: int, n1: int, c: int, n2: int) -> float:
    """P(X >= a) for X hypergeometric: a of the a + c down-ratings falling in the window's n1."""
    total, downs = n1 + n2, a + c
    denominator = math.comb(total, downs)
    top = min(n1, downs)
    return min(1.0, sum(math.comb(n1, x) * math.comb(n2, downs - x) for x in range(a, top + 1)) / denominator)
