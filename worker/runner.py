"""The arq entry point: run `create_invoice` for one job and act on what follows.

The domain procedure raises; this module turns each outcome into exactly one
ledger transition and one arq answer, as the retry policy decides
(`worker.retry_policy`):

| outcome              | ledger                          | arq                       |
|----------------------|---------------------------------|---------------------------|
| receipt              | created / sent                  | done                      |
| NotYet (a wait)      | unchanged, no failure counted   | Retry(defer=retry_after+) |
| RateLimited, paused  | unchanged, no failure counted   | Retry(defer=retry_after+) |
| ConfigurationError   | unchanged (provider paused)     | Retry(defer=pause check)  |
| OutcomeUnknown       | in_doubt, failure counted       | Retry(backoff) or park    |
| other TransientError | queued, failure counted         | Retry(backoff) or dead    |
| PermanentError       | rejected + dead letter          | done                      |

(`retry_after+`: the delay asked for plus a small jitter, never less.)
Every `Retry` raised here is a `Deferred`, which says why.

Dead-lettering happens here, on the run that spends the budget, because arq
calls nothing after its last try (docs/design.md, "arq: what we rely on").
Business failures are returned, never raised, so Sentry's arq integration
only ever sees bugs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TypedDict

from arq import Retry
from pydantic import ValidationError
from redis.exceptions import ResponseError

from jobs.create_invoice import create_invoice
from jobs.errors import (
    ConfigurationError,
    ErrorInfo,
    InvoiceError,
    NotYet,
    OutcomeUnknown,
    ProviderUnreachable,
    RateLimited,
    TransientError,
)
from jobs.models import Invoice, Provider
from worker.damaged import park_damaged, park_unreadable
from worker.held import HeldEntry, LeaseLost
from worker.keys import InvoiceKey
from worker.ledger import UnreadableRecord, unreadable
from worker.observability import describe_bug
from worker.outage import is_outage
from worker.retry_policy import Attempt, Defer, counts_as_failure, decide
from worker.runtime import Runtime

log = logging.getLogger("invoicer.worker")

Outcome = Literal["created", "sent", "dead_lettered", "nothing_to_do", "lease_lost"]


@dataclass(frozen=True)
class JobContext:
    """arq's `ctx` of one job (a plain dict), as far as we read it."""

    runtime: Runtime
    """Put there at start-up (`worker.app`)."""
    job_id: str
    job_try: int
    """arq's count of pick-ups of this job (1 the first time), deferrals included."""

    @classmethod
    def of(cls, ctx: Mapping[str, Any]) -> JobContext:
        """The typed view of arq's `ctx`."""
        return cls(runtime=ctx["runtime"], job_id=ctx["job_id"], job_try=int(ctx["job_try"]))


class Deferred(Retry):
    """arq's `Retry`, with why the job waits (`invoicer send` prints it)."""

    def __init__(self, defer_s: float, why: str) -> None:
        super().__init__(defer=defer_s)
        self.defer_s = defer_s
        self.why = why


class JobResult(TypedDict):
    """What a job returns to arq (kept small: arq stores it)."""

    outcome: Outcome
    invoice_key: str


async def create_invoice_job(ctx: dict[str, Any], invoice_key: str) -> JobResult:
    """arq job: create (and perhaps send) one invoice, exactly once."""
    job = JobContext.of(ctx)
    runtime = job.runtime
    held = await _claim(runtime, invoice_key, job.job_id)
    if held is None:
        await _nothing_to_do(runtime, invoice_key, job.job_id)
        return JobResult(outcome="nothing_to_do", invoice_key=invoice_key)
    runtime.holding.add(held)
    try:
        return await _run(runtime, held, job_try=job.job_try)
    except LeaseLost:
        log.warning("lease lost %s: another worker took it over", invoice_key)
        return JobResult(outcome="lease_lost", invoice_key=invoice_key)
    except asyncio.CancelledError:
        # Cancelled (shutdown). A create that may have left stays `sending`:
        # the next claim looks up at once and waits out the landing window
        # itself. One that never left goes back to the queue now, so the
        # next worker need not wait a window for a request nobody sent.
        if not held.request_started:
            await asyncio.shield(_wait(held, "cancelled before any request left"))
        raise
    finally:
        runtime.holding.discard(held)
        await asyncio.shield(_release(held))


async def _claim(runtime: Runtime, invoice_key: str, job_id: str) -> HeldEntry | None:
    # One script does the claim, the `sending` mark and (without a rate
    # limit) the pause probe: three round trips become one per invoice.
    provider = _provider_of(invoice_key)
    limiter = runtime.limiters.get(provider) if provider is not None else None
    pause_key = limiter.pause_key if limiter is not None and limiter.probes_pause else None
    try:
        return await runtime.ledger.claim(
            invoice_key, job_id, early_sending=True, pause_key=pause_key
        )
    except (UnreadableRecord, ResponseError) as damage:
        # A record Redis hands back that does not parse, or that our scripts
        # cannot move: parked or refused, never raised (it would strand it).
        await park_damaged(runtime.refusals, runtime.keys, job_id, damage)
        return None


async def _nothing_to_do(runtime: Runtime, invoice_key: str, job_id: str) -> None:
    # A superseded, finished or busy invoice is routine (a stale generation,
    # a second run). No record at all means a job that is not ours to run:
    # it is listed and said once (the job ends here).
    if await runtime.ledger.exists(invoice_key):
        return
    provider = _provider_of(invoice_key)
    queue = runtime.keys.queue(provider) if provider is not None else "?"
    await runtime.refusals.refuse_unknown(queue, job_id, invoice_key)


def _provider_of(invoice_key: str) -> Provider | None:
    # A job argument is whatever sits in Redis: not ours, no limiter (the
    # claim then finds no record and the job ends with nothing to do).
    try:
        return InvoiceKey.parse(invoice_key).provider
    except ValueError:
        return None


async def _run(runtime: Runtime, held: HeldEntry, *, job_try: int) -> JobResult:
    started = time.monotonic()
    try:
        invoice = Invoice.model_validate_json(held.payload)
    except ValidationError as exc:
        # Nothing left in this run: a record premarked `sending` is rejected,
        # one already in doubt stays in doubt.
        why = f"payload: {unreadable(exc)}"
        await park_unreadable(runtime.refusals, runtime.keys, held, why, may_have_landed=False)
        return JobResult(outcome="dead_lettered", invoice_key=held.invoice_key)
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
    except NotYet as wait:
        await _not_yet(runtime, held, wait, job_try=job_try)
    except InvoiceError as error:
        return await _failed(runtime, held, error, job_try=job_try)
    except Exception as bug:
        if is_outage(bug):  # Redis away: not the invoice's fault (worker.outage)
            raise
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
    # Never the exception's text or repr: it can hold the request and its headers.
    info = ErrorInfo(kind=type(bug).__name__, reason="unexpected", message=describe_bug(bug))
    log.error("dead %s unexpected %s", held.invoice_key, info.message)
    await held.dead_letter(info, attempts=held.failures + 1, exhausted=False)


async def _not_yet(runtime: Runtime, held: HeldEntry, wait: NotYet, *, job_try: int) -> NoReturn:
    """Defer the job: nothing failed, but acting now could create a duplicate."""
    attempt = Attempt(held.failures, 0.0, job_try)
    decision = decide(wait, attempt, runtime.settings.retry)
    assert isinstance(decision, Defer)  # a wait is never dead-lettered
    await held.wait(f"{wait.why} (again in {decision.delay_s:.1f}s)")
    log.info("waiting %s %.1fs: %s", held.invoice_key, decision.delay_s, wait.why)
    raise Deferred(decision.delay_s, wait.why)


async def _failed(
    runtime: Runtime, held: HeldEntry, error: InvoiceError, *, job_try: int
) -> JobResult:
    info = ErrorInfo.of(error)
    age_s = time.time() - held.first_at_ms / 1000
    decision = decide(error, Attempt(held.failures, age_s, job_try), runtime.settings.retry)
    await _record_try(held, error, info)
    if isinstance(decision, Defer):
        if counts_as_failure(error):
            log.warning(
                "retry %s in %.1fs %s", held.invoice_key, decision.delay_s, error.describe()
            )
        elif isinstance(error, ProviderUnreachable):
            # The account's condition, said once per streak by
            # `worker.reachability`, not once per invoice and try.
            log.debug("retry %s in %.1fs %s", held.invoice_key, decision.delay_s, error.message)
        raise Deferred(decision.delay_s, error.describe())
    await held.dead_letter(info, attempts=held.failures + 1, exhausted=decision.exhausted)
    log.warning("dead %s %s", held.invoice_key, error.describe())
    return JobResult(outcome="dead_lettered", invoice_key=held.invoice_key)


async def _record_try(held: HeldEntry, error: InvoiceError, info: ErrorInfo) -> None:
    """The ledger's note of a failed try the invoice may come back from."""
    if isinstance(error, OutcomeUnknown):
        await held.mark_in_doubt(info)  # counts a failure
    elif isinstance(error, RateLimited):
        await held.retry_later(None, count_failure=False)
    elif isinstance(error, TransientError | ConfigurationError):
        # A bad key (the limiter paused the provider and reported it once)
        # leaves the record queued: it must never dead-letter a batch.
        await held.retry_later(info, count_failure=counts_as_failure(error))
    # A permanent error goes straight to the dead-letter queue.


async def _release(held: HeldEntry) -> None:
    with contextlib.suppress(LeaseLost):
        await held.release()


async def _wait(held: HeldEntry, why: str) -> None:
    with contextlib.suppress(LeaseLost):
        await held.wait(why)
