"""The retry policy: what follows a failed try. Pure functions, no I/O.

Given the error, the attempt and the budget, `decide` answers "defer N
seconds" or "dead-letter" (like dramatiq's `Retries` middleware); the runner
acts on it (`worker.runner`: the ledger transition and arq's answer).

| error                | counts a failure | decision                                        |
|----------------------|------------------|-------------------------------------------------|
| NotYet (no error)    | no               | defer its `retry_after_s`, plus a small jitter  |
| RateLimited          | no               | defer its `retry_after_s`, plus a small jitter  |
| ConfigurationError   | no               | defer `PAUSE_RECHECK_S` (paused until resumed)  |
| ProviderUnreachable  | no               | defer a backoff by the job's pick-ups; only the |
|                      |                  | age budget dead-letters it ("exhausted")        |
| PermanentError       | no               | dead-letter                                     |
| other TransientError | yes              | defer a backoff; once the budget is spent,      |
|                      |                  | dead-letter ("exhausted")                       |

The budget (`RetrySettings`): failed attempts, the invoice's age, and arq's
own try count (`worker.arq_job.MAX_TRIES`, a backstop: arq calls nothing
once it is reached, so we must give up first).

A wait (`NotYet`: a landing window, a lease too close to its end) or a
rate limit is a floor: the job comes back no sooner, and up to
`min(backoff_base_s, retry_after_s)` later, so the jobs turned away by one
pause or one burst of timeouts do not all wake in the same millisecond.

A failed connection (`ProviderUnreachable`) says nothing about the
invoice: many in a row pause the whole account until it answers
(`worker.reachability`), so it never spends the invoice's attempts, which
would otherwise run out before the pause takes over (a short backoff, a low
`INVOICER_MAX_ATTEMPTS`). Its backoff grows with the job's pick-ups instead.

Backoff is exponential with *full* jitter (AWS Architecture Blog,
"Exponential Backoff And Jitter"): the delay is drawn uniformly from zero to
the capped exponential, which spreads a crowd of retrying jobs over the whole
interval instead of sending them back together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from jobs.errors import (
    ConfigurationError,
    InvoiceError,
    NotYet,
    PermanentError,
    ProviderUnreachable,
    RateLimited,
    TransientError,
)
from worker.arq_job import MAX_TRIES
from worker.settings import RetrySettings

PAUSE_RECHECK_S = 5.0
"""How soon a job turned away by a pause with no end (an API key refused, a
pause set by hand) looks again."""

_MAX_EXPONENT = 60
"""2**60 s outlives any cap; clamping keeps `base_s * 2**n` a finite float."""


def _reasons(root: type[InvoiceError]) -> frozenset[str]:
    """The reason words of `root` and of every error class under it."""
    found = {root.reason}
    for sub in root.__subclasses__():
        found |= _reasons(sub)
    return frozenset(found)


PERMANENT_REASONS = _reasons(PermanentError)
"""Error reasons that prove the provider did not create the invoice."""
TRANSIENT_REASONS = _reasons(TransientError)
"""Error reasons that, when dead-lettered, mean the retry budget ran out."""


@dataclass(frozen=True)
class Attempt:
    """The try that just failed."""

    failures: int
    """Failed attempts before this one (the ledger's count)."""
    age_s: float
    """Since the invoice was first enqueued."""
    job_try: int
    """arq's count of pick-ups of this job, deferrals included (1 the first time)."""


@dataclass(frozen=True)
class Defer:
    """Run the job again in `delay_s` seconds."""

    delay_s: float


@dataclass(frozen=True)
class DeadLetter:
    """Park the invoice for a person."""

    exhausted: bool
    """The error was worth retrying, but the budget is spent."""


Decision = Defer | DeadLetter


def counts_as_failure(error: InvoiceError) -> bool:
    """True when `error` spends the invoice's retry budget (and the ledger's
    failure count): a transient error other than a rate limit or a failed
    connection (the account's condition, not the invoice's)."""
    return isinstance(error, TransientError) and not isinstance(
        error, RateLimited | ProviderUnreachable
    )


def decide(
    error: InvoiceError | NotYet,
    attempt: Attempt,
    budget: RetrySettings,
    *,
    rng: random.Random | None = None,
) -> Decision:
    """What follows `error` on `attempt`, within `budget` (see the table above).

    Args:
        rng: the random source of the backoff and jitter (a seeded one for
            repeatable results).
    """
    if isinstance(error, NotYet | RateLimited):
        return Defer(not_before_s(error.retry_after_s, spread_s=budget.backoff_base_s, rng=rng))
    if isinstance(error, ConfigurationError):
        return Defer(PAUSE_RECHECK_S)
    if not isinstance(error, TransientError):
        return DeadLetter(exhausted=False)
    base_s, cap_s = budget.backoff_base_s, budget.backoff_cap_s
    if isinstance(error, ProviderUnreachable):
        if attempt.age_s >= budget.max_age_s or attempt.job_try >= MAX_TRIES:
            return DeadLetter(exhausted=True)
        return Defer(backoff_s(attempt.job_try, base_s=base_s, cap_s=cap_s, rng=rng))
    failures = attempt.failures + 1
    if (
        failures >= budget.max_attempts
        or attempt.age_s >= budget.max_age_s
        or attempt.job_try >= MAX_TRIES
    ):
        return DeadLetter(exhausted=True)
    return Defer(retry_delay_s(error, failures, base_s=base_s, cap_s=cap_s, rng=rng))


def _uniform(rng: random.Random | None, high: float) -> float:
    # Without an rng, the `random` module's OS-seeded generator: no state of ours.
    return rng.uniform(0.0, high) if rng is not None else random.uniform(0.0, high)


def backoff_s(
    failures: int, *, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """A full-jitter delay: uniform in `[0, min(cap_s, base_s * 2**failures)]`.

    Args:
        failures: how many times the job has failed so far (0 or more).
        base_s: the ceiling for `failures == 0`; it doubles with each failure.
        cap_s: the largest ceiling, however many failures.
        rng: the random source (pass a seeded one for repeatable results).

    Raises:
        ValueError: `failures` is negative, or `base_s`/`cap_s` is not positive.
    """
    if failures < 0:
        raise ValueError(f"failures must be >= 0, got {failures}")
    if base_s <= 0 or cap_s <= 0:
        raise ValueError(f"base_s and cap_s must be > 0, got {base_s}, {cap_s}")
    ceiling_s = min(cap_s, base_s * 2 ** min(failures, _MAX_EXPONENT))
    return _uniform(rng, ceiling_s)


def retry_delay_s(
    error: InvoiceError,
    failures: int,
    *,
    base_s: float,
    cap_s: float,
    rng: random.Random | None = None,
) -> float:
    """The delay before retrying after `error`, the job's `failures`-th failure.

    A `RateLimited` error is retried after `not_before_s(retry_after_s)`;
    every other error gets `backoff_s(failures, ...)`.

    Raises:
        ValueError: as `backoff_s`.
    """
    if isinstance(error, RateLimited):
        return not_before_s(error.retry_after_s, spread_s=base_s, rng=rng)
    return backoff_s(failures, base_s=base_s, cap_s=cap_s, rng=rng)


def not_before_s(floor_s: float, *, spread_s: float, rng: random.Random | None = None) -> float:
    """`floor_s` plus a jitter uniform in `[0, min(spread_s, floor_s)]`: never
    sooner than asked, and a crowd told the same floor comes back spread out."""
    floor_s = max(0.0, floor_s)
    return floor_s + _uniform(rng, min(spread_s, floor_s))
