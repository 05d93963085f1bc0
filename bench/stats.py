"""How far one run's ratio of two tail latencies can be trusted (H5).

H5's verdict is a ratio of two p99s, each read from a few hundred requests: the p99 of 200 is
the second slowest, and the ratio moved by about 0.3 x of idle between runs of the same tree
(docs/performance.md, "H5's floor"). `ratio_interval` says how far it moves within a run: it
draws both samples again with replacement (a bootstrap), takes the ratio of their p99s each
time, and returns the central share of those ratios. A verdict near the target whose interval
straddles it is not settled by the run.

Seeded: the same samples give the same interval, so a report made twice reads the same.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

RESAMPLES = 2000
LEVEL = 0.90


def quantile(values: Sequence[float], q: float) -> float:
    """The value at rank int(q * n) of the sorted values, as bench.h5_probe reads its p99."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ratio_interval(
    numerator: Sequence[float],
    denominator: Sequence[float],
    *,
    q: float = 0.99,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """The central `level` of quantile(numerator) / quantile(denominator) over `resamples`
    bootstrap draws of both samples (the percentile interval)."""
    if not numerator or not denominator:
        raise ValueError("both samples need values")
    if not 0 < level < 1 or resamples < 1:
        raise ValueError("level must be within (0, 1) and resamples at least 1")
    draw = random.Random(seed).choices
    ratios = sorted(
        quantile(draw(numerator, k=len(numerator)), q)
        / quantile(draw(denominator, k=len(denominator)), q)
        for _ in range(resamples)
    )
    tail = (1 - level) / 2
    return ratios[int(tail * (resamples - 1))], ratios[round((1 - tail) * (resamples - 1))]
