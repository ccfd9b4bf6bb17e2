"""Reconnect backoff: exponential, capped, with equal jitter."""

from __future__ import annotations

import itertools
import random

import pytest

from voice_agent.backoff import backoff_delays


def _take(n: int, **kwargs: object) -> list[float]:
    return list(itertools.islice(backoff_delays(**kwargs), n))  # type: ignore[arg-type]


def _bases(initial: float, maximum: float, n: int, factor: float = 2.0) -> list[float]:
    bases, base = [], initial
    for _ in range(n):
        bases.append(base)
        base = min(maximum, base * factor)
    return bases


def test_expected_bases_helper() -> None:
    # The reference schedule the tests compare against: doubling, then capped.
    assert _bases(0.5, 15.0, 8) == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]


@pytest.mark.parametrize("seed", [0, 1, 42, 2026])
def test_each_delay_is_within_half_base_and_base(seed: int) -> None:
    delays = _take(12, initial=0.5, maximum=15.0, rng=random.Random(seed))
    for delay, base in zip(delays, _bases(0.5, 15.0, 12), strict=True):
        assert base / 2 <= delay <= base, (delay, base)


def test_delays_use_the_given_rng_exactly() -> None:
    reference = random.Random(7)
    delays = _take(10, initial=0.25, maximum=4.0, rng=random.Random(7))
    expected = [b / 2 + reference.random() * b / 2 for b in _bases(0.25, 4.0, 10)]
    assert delays == pytest.approx(expected)


def test_first_delays_grow_then_cap() -> None:
    # With the rng pinned to its extremes the bounds are hit exactly.
    class Fixed(random.Random):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value

        def random(self) -> float:
            return self.value

    assert _take(7, initial=1.0, maximum=10.0, rng=Fixed(0.0)) == [
        0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0
    ]
    assert _take(7, initial=1.0, maximum=10.0, rng=Fixed(0.999999)) == pytest.approx(
        [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0], rel=1e-5
    )


def test_custom_factor() -> None:
    delays = _take(6, initial=1.0, maximum=50.0, factor=3.0, rng=random.Random(3))
    for delay, base in zip(delays, [1.0, 3.0, 9.0, 27.0, 50.0, 50.0], strict=True):
        assert base / 2 <= delay <= base


def test_long_run_never_exceeds_maximum() -> None:
    delays = _take(1000, initial=0.5, maximum=15.0, rng=random.Random(99))
    assert max(delays) <= 15.0
    # once capped, delays stay in the top band [max/2, max]
    assert min(delays[10:]) >= 7.5


def test_jitter_varies_between_seeds() -> None:
    a = _take(10, initial=0.5, maximum=15.0, rng=random.Random(1))
    b = _take(10, initial=0.5, maximum=15.0, rng=random.Random(2))
    assert a != b
    assert all(x != y for x, y in zip(a, b, strict=True))


def test_same_seed_same_schedule() -> None:
    a = _take(10, initial=0.5, maximum=15.0, rng=random.Random(5))
    b = _take(10, initial=0.5, maximum=15.0, rng=random.Random(5))
    assert a == b


def test_jitter_varies_within_one_schedule() -> None:
    delays = _take(50, initial=15.0, maximum=15.0, rng=random.Random(11))
    assert len(set(delays)) > 40  # all drawn from [7.5, 15]: not a constant
    assert all(7.5 <= d <= 15.0 for d in delays)


def test_default_rng_is_within_bounds() -> None:
    delays = _take(20, initial=0.5, maximum=15.0)
    for delay, base in zip(delays, _bases(0.5, 15.0, 20), strict=True):
        assert base / 2 <= delay <= base
