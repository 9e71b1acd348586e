"""Backoff: full-jitter bounds, the cap, the spread of delays, Retry-After as a floor."""

from __future__ import annotations

import random
import statistics

import pytest

from jobs.errors import (
    InvoiceError,
    InvoiceRejected,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
)
from worker.backoff import backoff_s, retry_delay_s


@pytest.mark.parametrize("failures", range(12))
def test_delay_stays_between_zero_and_the_capped_exponential(failures: int) -> None:
    rng = random.Random(failures)
    ceiling_s = min(60.0, 0.5 * 2**failures)
    delays = [backoff_s(failures, base_s=0.5, cap_s=60.0, rng=rng) for _ in range(200)]
    assert all(0.0 <= d <= ceiling_s for d in delays)
    # Full jitter uses the whole interval, not just its top.
    assert max(delays) > 0.8 * ceiling_s
    assert min(delays) < 0.2 * ceiling_s


def test_cap_holds_for_huge_failure_counts() -> None:
    rng = random.Random(1)
    delays = [backoff_s(n, base_s=1.0, cap_s=300.0, rng=rng) for n in (40, 1_000, 10**6)]
    assert all(0.0 <= d <= 300.0 for d in delays)


def test_jitter_is_uniform_over_the_interval() -> None:
    rng = random.Random(42)
    delays = [backoff_s(3, base_s=1.0, cap_s=100.0, rng=rng) for _ in range(4000)]
    # Ceiling 8 s: a uniform draw has mean 4 and each quarter holds about 1/4.
    assert 3.8 < statistics.fmean(delays) < 4.2
    quarters = [sum(1 for d in delays if q * 2 <= d < (q + 1) * 2) for q in range(4)]
    assert all(850 < n < 1150 for n in quarters), quarters


def test_same_seed_same_delays() -> None:
    first = [backoff_s(n, base_s=1.0, cap_s=30.0, rng=random.Random(7)) for n in range(5)]
    second = [backoff_s(n, base_s=1.0, cap_s=30.0, rng=random.Random(7)) for n in range(5)]
    assert first == second


def test_without_rng_still_within_bounds() -> None:
    assert 0.0 <= backoff_s(2, base_s=1.0, cap_s=3.0) <= 3.0


@pytest.mark.parametrize(
    ("failures", "base_s", "cap_s"), [(-1, 1.0, 10.0), (1, 0.0, 10.0), (1, 1.0, -5.0)]
)
def test_nonsense_arguments_are_refused(failures: int, base_s: float, cap_s: float) -> None:
    with pytest.raises(ValueError):
        backoff_s(failures, base_s=base_s, cap_s=cap_s)


def test_retry_after_is_a_floor_with_bounded_jitter() -> None:
    rng = random.Random(3)
    error = RateLimited("429", retry_after_s=30.0, status=429)
    delays = [retry_delay_s(error, 5, base_s=2.0, cap_s=300.0, rng=rng) for _ in range(500)]
    assert all(30.0 <= d <= 32.0 for d in delays)
    assert max(delays) - min(delays) > 1.0  # spread, so a paused crowd does not return at once


def test_retry_after_wins_over_a_smaller_backoff_cap() -> None:
    error = RateLimited("paused", retry_after_s=120.0)
    assert retry_delay_s(error, 0, base_s=1.0, cap_s=5.0, rng=random.Random(1)) >= 120.0


def test_zero_retry_after_means_now() -> None:
    error = RateLimited("slot free", retry_after_s=0.0)
    assert retry_delay_s(error, 3, base_s=1.0, cap_s=5.0, rng=random.Random(1)) == 0.0


@pytest.mark.parametrize(
    "error",
    [ProviderUnavailable("503", status=503), OutcomeUnknown("timeout"), InvoiceRejected("x")],
)
def test_other_errors_use_the_exponential_backoff(error: InvoiceError) -> None:
    expected = backoff_s(4, base_s=1.0, cap_s=60.0, rng=random.Random(9))
    got = retry_delay_s(error, 4, base_s=1.0, cap_s=60.0, rng=random.Random(9))
    assert got == expected
    assert 0.0 <= got <= 16.0
