"""The retry policy: defer or dead-letter per error and budget; full-jitter
bounds, the cap, the spread of delays, Retry-After as a floor."""

from __future__ import annotations

import random
import statistics

import pytest

from jobs.errors import (
    ConfigurationError,
    InvoiceConflict,
    InvoiceError,
    InvoiceInvalid,
    InvoiceRejected,
    NotYet,
    OutcomeUnknown,
    PermanentError,
    ProviderUnavailable,
    ProviderUnreachable,
    RateLimited,
    TransientError,
)
from worker.arq_job import MAX_TRIES
from worker.retry_policy import (
    PAUSE_RECHECK_S,
    PERMANENT_REASONS,
    TRANSIENT_REASONS,
    Attempt,
    DeadLetter,
    Defer,
    backoff_s,
    counts_as_failure,
    decide,
    retry_delay_s,
)
from worker.settings import RetrySettings

BUDGET = RetrySettings(max_attempts=3, max_age_s=3600, backoff_base_s=1.0, backoff_cap_s=60.0)
FIRST = Attempt(failures=0, age_s=1.0, job_try=1)


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


@pytest.mark.parametrize(
    "wait",
    [RateLimited("429", retry_after_s=7.0, status=429), NotYet(7.0, "landing window")],
    ids=["rate_limited", "not_yet"],
)
def test_waits_are_deferred_no_sooner_than_asked_and_spread(wait: RateLimited | NotYet) -> None:
    late = Attempt(failures=2, age_s=1e9, job_try=MAX_TRIES)  # a budget long spent
    rng = random.Random(5)
    delays = []
    for _ in range(300):
        decision = decide(wait, late, BUDGET, rng=rng)
        assert isinstance(decision, Defer)
        delays.append(decision.delay_s)
    assert all(7.0 <= d <= 7.0 + BUDGET.backoff_base_s for d in delays)
    # a crowd deferred by one pause or one landing window does not wake together
    assert max(delays) - min(delays) > BUDGET.backoff_base_s / 2


def test_waits_count_no_failure() -> None:
    late = Attempt(failures=2, age_s=1e9, job_try=MAX_TRIES)  # a budget long spent
    limited = RateLimited("429", retry_after_s=7.0, status=429)
    refused = ConfigurationError("API key refused", status=401)
    assert decide(refused, late, BUDGET) == Defer(PAUSE_RECHECK_S)
    assert not counts_as_failure(limited) and not counts_as_failure(refused)


@pytest.mark.parametrize(
    "error", [InvoiceRejected("no", status=422), InvoiceConflict("taken"), InvoiceInvalid("bad")]
)
def test_permanent_errors_are_dead_lettered_at_once(error: InvoiceError) -> None:
    assert decide(error, FIRST, BUDGET) == DeadLetter(exhausted=False)
    assert not counts_as_failure(error)


@pytest.mark.parametrize("error", [ProviderUnavailable("503", status=503), OutcomeUnknown("?")])
def test_transient_errors_back_off_until_the_budget_is_spent(error: InvoiceError) -> None:
    assert counts_as_failure(error)
    decision = decide(error, Attempt(failures=1, age_s=1.0, job_try=2), BUDGET)
    assert isinstance(decision, Defer) and 0.0 <= decision.delay_s <= 4.0  # 1 s * 2**2
    spent = [
        Attempt(failures=2, age_s=1.0, job_try=3),  # the third failure of three allowed
        Attempt(failures=0, age_s=3600.0, job_try=1),  # too old
        Attempt(failures=0, age_s=1.0, job_try=MAX_TRIES),  # arq's backstop
    ]
    assert all(decide(error, a, BUDGET) == DeadLetter(exhausted=True) for a in spent)


def test_reason_sets_follow_the_error_tree() -> None:
    assert {"permanent", "invalid", "rejected", "conflict"} == PERMANENT_REASONS
    assert {
        "transient",
        "unavailable",
        "unreachable",
        "rate_limited",
        "outcome_unknown",
    } == TRANSIENT_REASONS
    assert PermanentError.reason in PERMANENT_REASONS
    assert TransientError.reason in TRANSIENT_REASONS
    assert ConfigurationError.reason not in PERMANENT_REASONS | TRANSIENT_REASONS


def test_a_failed_connection_never_spends_the_invoices_attempts() -> None:
    # The account's reachability pause takes over (worker.reachability): an
    # invoice must not be dead-lettered for its provider's address.
    refused = ProviderUnreachable("no connection")
    assert not counts_as_failure(refused)
    rng = random.Random(7)
    for job_try in range(1, 40):
        spent = Attempt(failures=BUDGET.max_attempts + 5, age_s=10.0, job_try=job_try)
        decision = decide(refused, spent, BUDGET, rng=rng)
        assert isinstance(decision, Defer)
        assert 0 <= decision.delay_s <= min(BUDGET.backoff_cap_s, 2**job_try)
    # Only the invoice's age ends it.
    old = Attempt(failures=0, age_s=BUDGET.max_age_s, job_try=2)
    assert decide(refused, old, BUDGET) == DeadLetter(exhausted=True)
