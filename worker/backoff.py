"""How long a failed job waits before its next try: pure functions, no I/O.

Exponential backoff with *full* jitter (AWS Architecture Blog, "Exponential
Backoff And Jitter"): the delay is drawn uniformly from zero to the capped
exponential, which spreads a crowd of retrying jobs over the whole interval
instead of sending them back together. A provider's own `Retry-After` (carried
by `RateLimited`) is a floor we never go under. This module decides nothing
about *whether* to retry: the runner's failure budget does.
"""

from __future__ import annotations

import random

from jobs.errors import InvoiceError, RateLimited

_MAX_EXPONENT = 60
"""2**60 s outlives any cap; clamping keeps `base_s * 2**n` a finite float."""


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

    A `RateLimited` error is retried after its `retry_after_s` plus a small
    jitter (at most `min(base_s, retry_after_s)`), so jobs deferred by one
    pause do not all come back in the same millisecond; never sooner. Every
    other error gets `backoff_s(failures, ...)`.

    Raises:
        ValueError: as `backoff_s`.
    """
    if isinstance(error, RateLimited):
        floor_s = max(0.0, error.retry_after_s)
        spread_s = min(base_s, floor_s)
        return floor_s + _uniform(rng, spread_s)
    return backoff_s(failures, base_s=base_s, cap_s=cap_s, rng=rng)
