"""The arq entry point: run `create_invoice` for one job and decide what follows.

The domain procedure raises; this module turns each outcome into exactly one
ledger transition and one arq answer (STYLE-ANCHORS 4.3):

| outcome              | ledger                          | arq                       |
|----------------------|---------------------------------|---------------------------|
| receipt              | created / sent                  | done                      |
| RateLimited, paused  | unchanged, no failure counted   | Retry(defer=retry_after)  |
| ConfigurationError   | unchanged (provider paused)     | Retry(defer=pause check)  |
| OutcomeUnknown       | in_doubt, failure counted       | Retry(backoff) or park    |
| other TransientError | queued, failure counted         | Retry(backoff) or dead    |
| PermanentError       | rejected + dead letter          | done                      |

Dead-lettering happens here, on the last allowed try, because arq calls
nothing after `max_tries` (QUEUE-ANCHORS 1.4). Business failures are returned,
never raised, so Sentry's arq integration only ever sees bugs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Literal, TypedDict

from arq import Retry

from jobs.create_invoice import create_invoice
from jobs.errors import (
    ConfigurationError,
    ErrorInfo,
    InvoiceError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TransientError,
)
from jobs.models import Invoice, Provider
from worker.arq_job import MAX_TRIES
from worker.backoff import retry_delay_s
from worker.keys import InvoiceKey
from worker.ledger import HeldEntry, LeaseLost
from worker.observability import scrub
from worker.runtime import Runtime

log = logging.getLogger("invoicer.worker")

PAUSE_RECHECK_S = 5.0
"""How soon a job deferred by a paused provider looks again."""

Outcome = Literal["created", "sent", "dead_lettered", "nothing_to_do", "lease_lost"]


class JobResult(TypedDict):
    """What a job returns to arq (kept small: arq stores it)."""

    outcome: Outcome
    invoice_key: str


async def create_invoice_job(ctx: dict[str, Any], invoice_key: str) -> JobResult:
    """arq job: create (and perhaps send) one invoice, exactly once."""
    runtime: Runtime = ctx["runtime"]
    held = await _claim(runtime, invoice_key, ctx["job_id"])
    if held is None:
        return JobResult(outcome="nothing_to_do", invoice_key=invoice_key)
    runtime.holding.add(held)
    landing_s: float | None = None
    try:
        return await _run(runtime, held, job_try=int(ctx.get("job_try", 1)))
    except LeaseLost:
        log.warning("lease lost %s: another worker took it over", invoice_key)
        return JobResult(outcome="lease_lost", invoice_key=invoice_key)
    except asyncio.CancelledError:
        # Cancelled mid-request (shutdown): the ledger says `sending` and the
        # next claim turns that into a lookup, but the request we let go may
        # still be processed for as long as we would have waited for its
        # answer: a lookup before then could miss it and create it twice.
        landing_s = runtime.settings.provider(held.provider).read_timeout_s
        raise
    finally:
        runtime.holding.discard(held)
        await asyncio.shield(_release(held, landing_s))


async def _claim(runtime: Runtime, invoice_key: str, job_id: str) -> HeldEntry | None:
    # One script does the claim, the `sending` mark and (without a rate
    # limit) the pause probe: three round trips become one per invoice.
    provider = _provider_of(invoice_key)
    limiter = runtime.limiters.get(provider) if provider is not None else None
    pause_key = limiter.pause_key if limiter is not None and limiter.probes_pause else None
    return await runtime.ledger.claim(invoice_key, job_id, early_sending=True, pause_key=pause_key)


def _provider_of(invoice_key: str) -> Provider | None:
    # A job argument is whatever sits in Redis: not ours, no limiter (the
    # claim then finds no record and the job ends with nothing to do).
    try:
        return InvoiceKey.parse(invoice_key).provider
    except ValueError:
        return None


async def _run(runtime: Runtime, held: HeldEntry, *, job_try: int) -> JobResult:
    started = time.monotonic()
    invoice = Invoice.model_validate_json(held.payload)
    held.release_when_done = not invoice.send
    # DEBUG: at INFO, a line per start costs more than the rest of the logging.
    log.debug("start %s try=%d", held.invoice_key, job_try)
    limiter = runtime.limiters[held.provider]
    try:
        receipt = await create_invoice(
            invoice,
            held.claim,
            provider=runtime.providers[held.provider],
            ledger=held,
            limiter=limiter.with_pause_read(held.pause) if held.pause_read else limiter,
        )
    except InvoiceError as error:
        return await _failed(runtime, held, error, job_try=job_try)
    except Exception as bug:
        await _park_after_bug(held, bug)
        raise
    outcome: Outcome = "sent" if receipt.sent else "created"
    log.info(
        "%s %s id=%s %.2fs",
        outcome,
        held.invoice_key,
        receipt.provider_id,
        time.monotonic() - started,
    )
    return JobResult(outcome=outcome, invoice_key=held.invoice_key)


async def _park_after_bug(held: HeldEntry, bug: Exception) -> None:
    """A bug (ours, or a provider answer we cannot read) must not strand the
    invoice: arq drops a job that raises. Park it for a person (in doubt when
    a request may have left) and let arq, and so Sentry, see the exception."""
    info = ErrorInfo(kind=type(bug).__name__, reason="unexpected", message=scrub(repr(bug))[:500])
    log.error("dead %s unexpected %s", held.invoice_key, info.message)
    await held.dead_letter(info, attempts=held.failures + 1, exhausted=False)


async def _failed(
    runtime: Runtime, held: HeldEntry, error: InvoiceError, *, job_try: int
) -> JobResult:
    info = ErrorInfo.of(error)
    if isinstance(error, RateLimited):
        await held.retry_later(None, count_failure=False)
        raise Retry(defer=error.retry_after_s)
    if isinstance(error, ConfigurationError):
        # The limiter paused the provider and reported it once; the record
        # stays queued: a bad key must never dead-letter a batch.
        await held.retry_later(info, count_failure=False)
        raise Retry(defer=PAUSE_RECHECK_S)
    if isinstance(error, PermanentError):
        return await _dead_letter(held, info, error)
    assert isinstance(error, TransientError)
    if isinstance(error, OutcomeUnknown):
        await held.mark_in_doubt(info)
    else:
        await held.retry_later(info, count_failure=True)
    failures = held.failures + 1
    if _budget_spent(runtime, held, failures, job_try):
        return await _dead_letter(held, info, error, attempts=failures)
    retry = runtime.settings.retry
    delay_s = retry_delay_s(error, failures, base_s=retry.backoff_base_s, cap_s=retry.backoff_cap_s)
    log.warning("retry %s in %.1fs %s", held.invoice_key, delay_s, error.describe())
    raise Retry(defer=delay_s)


def _budget_spent(runtime: Runtime, held: HeldEntry, failures: int, job_try: int) -> bool:
    retry = runtime.settings.retry
    age_s = time.time() - held.first_at_ms / 1000
    return failures >= retry.max_attempts or age_s >= retry.max_age_s or job_try >= MAX_TRIES


async def _dead_letter(
    held: HeldEntry, info: ErrorInfo, error: InvoiceError, *, attempts: int | None = None
) -> JobResult:
    await held.dead_letter(info, attempts=attempts or held.failures + 1)
    log.warning("dead %s %s", held.invoice_key, error.describe())
    return JobResult(outcome="dead_lettered", invoice_key=held.invoice_key)


async def _release(held: HeldEntry, landing_s: float | None) -> None:
    with contextlib.suppress(LeaseLost):
        await held.release(retry_not_before_s=landing_s)
