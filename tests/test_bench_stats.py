"""bench.stats: the bootstrap interval H5's report puts beside each ratio of two p99s."""

from __future__ import annotations

import random

import pytest

from bench import stats
from bench.h5_probe import _quantile


def _latencies(n: int, seed: int, scale: float = 1.0) -> list[float]:
    """A page's times in ms: mostly near 20 ms, with a long tail (a lognormal)."""
    draw = random.Random(seed)
    return [scale * 20 * draw.lognormvariate(0, 0.35) for _ in range(n)]


def test_the_quantile_is_the_probes() -> None:
    values = _latencies(200, seed=1)

    # The probe takes seconds and answers milliseconds.
    assert _quantile([v / 1000 for v in values], 0.99) == pytest.approx(
        stats.quantile(values, 0.99), abs=0.01
    )
    assert stats.quantile([3.0, 1.0, 2.0], 0.5) == 2.0


def test_two_samples_of_one_distribution_give_an_interval_around_one() -> None:
    low, high = stats.ratio_interval(_latencies(200, seed=1), _latencies(200, seed=2))

    assert low < 1.0 < high


def test_a_page_twice_as_slow_is_told_apart_from_one_and_a_half_times() -> None:
    low, high = stats.ratio_interval(
        _latencies(300, seed=3, scale=2.0), _latencies(300, seed=4), level=0.9
    )

    assert 1.5 < low < 2.0 < high < 2.8


def test_the_interval_holds_the_ratio_of_the_samples_and_narrows_with_more_of_them() -> None:
    small = stats.ratio_interval(_latencies(200, seed=5, scale=1.5), _latencies(200, seed=6))
    large = stats.ratio_interval(_latencies(3000, seed=5, scale=1.5), _latencies(3000, seed=6))

    ratio = stats.quantile(_latencies(200, seed=5, scale=1.5), 0.99) / stats.quantile(
        _latencies(200, seed=6), 0.99
    )
    assert small[0] <= ratio <= small[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 2


def test_the_same_samples_give_the_same_interval() -> None:
    a, b = _latencies(200, seed=7), _latencies(200, seed=8)

    assert stats.ratio_interval(a, b) == stats.ratio_interval(a, b)


@pytest.mark.parametrize(
    ("numerator", "denominator", "options"),
    [
        ([], [1.0], {}),
        ([1.0], [], {}),
        ([1.0], [1.0], {"level": 1.0}),
        ([1.0], [1.0], {"resamples": 0}),
    ],
)
def test_what_cannot_be_bounded_is_refused(
    numerator: list[float], denominator: list[float], options: dict[str, float]
) -> None:
    with pytest.raises(ValueError):
        stats.ratio_interval(numerator, denominator, **options)  # type: ignore[arg-type]
