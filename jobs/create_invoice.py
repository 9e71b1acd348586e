"""The idempotent create procedure, written against the ports only.

Neither provider takes an idempotency key, so "exactly once" rests on three
rules kept here: never create while the ledger holds a receipt; never
create (or send) again after an attempt that may have landed without first
asking the provider whether it did; and when that lookup finds nothing, do
not believe it before the landing window of our last request has passed
(`NotYet`): a request that left may still be processed
(docs/operations.md, "The landing window"). Every request starts only while
the holder's lease is valid (`LedgerEntry.ensure_lease`, the last step
before it leaves). Errors propagate unchanged; deciding to retry, wait or
dead-letter is the runner's job.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from jobs.errors import InvoiceConflict, InvoiceError, NotYet
from jobs.models import Invoice, InvoiceReceipt
from jobs.ports import Claim, InvoiceProvider, LedgerEntry, Limiter

T = TypeVar("T")


async def create_invoice(
    invoice: Invoice,
    claim: Claim,
    *,
    provider: InvoiceProvider,
    ledger: LedgerEntry,
    limiter: Limiter,
) -> InvoiceReceipt:
    """Create `invoice` at most once, then send it if it asks to be sent.

    Args:
        invoice: the validated invoice.
        claim: what the ledger knew when this job was taken.

    Returns:
        The receipt, from the ledger, the provider's lookup or a new create.

    Raises:
        InvoiceError: whatever the provider or the limiter raised.
        NotYet: acting now could create a duplicate; come back later.
    """
    receipt = claim.receipt
    if receipt is None and claim.create_maybe_landed:
        receipt = await _find(invoice, provider=provider, ledger=ledger, limiter=limiter)
        if receipt is not None:
            await ledger.mark_created(receipt)
        elif claim.now_ms < claim.landing_until_ms:
            wait_s = (claim.landing_until_ms - claim.now_ms) / 1000
            raise NotYet(wait_s, "not found while an earlier create may still land")
    if receipt is None:
        # After an unknown outcome, Stax must not send on create: a copy that
        # landed late would reach the customer too (docs/operations.md).
        send_now = invoice.send and not claim.outcome_was_unknown
        receipt = await _create(
            invoice, send_now=send_now, provider=provider, ledger=ledger, limiter=limiter
        )
    if invoice.send and not receipt.sent:
        receipt = await _send(
            invoice, receipt, claim, provider=provider, ledger=ledger, limiter=limiter
        )
    return receipt


async def _create(
    invoice: Invoice,
    *,
    send_now: bool,
    provider: InvoiceProvider,
    ledger: LedgerEntry,
    limiter: Limiter,
) -> InvoiceReceipt:
    # The one validation per create, here rather than in `provider.create`:
    # whichever provider object it is given, this procedure never sends an
    # invalid invoice, and a refused invoice takes no slot and no ledger step.
    provider.validate(invoice)
    await limiter.acquire()
    await ledger.mark_sending()
    await ledger.ensure_lease()
    try:
        receipt = await _call(limiter, provider.create(invoice, send_now=send_now))
    except InvoiceConflict:
        # The provider already holds this number (Maast can be set to refuse
        # duplicates). If it is ours, an earlier attempt landed: adopt it.
        found = await _find(invoice, provider=provider, ledger=ledger, limiter=limiter)
        if found is None or not _same_total(found, invoice):
            raise
        receipt = found
    await ledger.mark_created(receipt)
    return receipt


async def _send(
    invoice: Invoice,
    receipt: InvoiceReceipt,
    claim: Claim,
    *,
    provider: InvoiceProvider,
    ledger: LedgerEntry,
    limiter: Limiter,
) -> InvoiceReceipt:
    if claim.send_maybe_landed:
        found = await _find(invoice, provider=provider, ledger=ledger, limiter=limiter)
        if found is not None and found.sent:
            await ledger.mark_sent(found)
            return found
    await limiter.acquire()
    await ledger.mark_send_started()
    await ledger.ensure_lease()
    sent = await _call(limiter, provider.send(receipt, invoice))
    await ledger.mark_sent(sent)
    return sent


async def _find(
    invoice: Invoice, *, provider: InvoiceProvider, ledger: LedgerEntry, limiter: Limiter
) -> InvoiceReceipt | None:
    await limiter.acquire()
    await ledger.ensure_lease()
    return await _call(limiter, provider.find(invoice))


async def _call(limiter: Limiter, request: Awaitable[T]) -> T:
    try:
        result = await request
    except InvoiceError as error:
        await limiter.record(error)
        raise
    await limiter.record(None)
    return result


def _same_total(receipt: InvoiceReceipt, invoice: Invoice) -> bool:
    return receipt.total is None or receipt.total == invoice.totals().total
