"""The idempotent create procedure, written against the ports only.

Neither provider takes an idempotency key, so "exactly once" rests on rules
kept here (docs/operations.md, "The landing window" and "Verification and
voiding"):

1. Never create while the ledger holds a receipt.
2. After an attempt that may have landed, look every copy up first and adopt
   one if there is one. If there is none, do not believe it before the
   landing window of our last request has passed (`NotYet`): a request that
   left may still be processed. Then look again, and only then create.
3. What is created or adopted after an unknown outcome is unverified: once
   its landing window has passed it is looked up again and late twins are
   voided (`jobs.verify`); only then is it sent. Such a create never sends
   on create (Stax `send_now`): a twin that landed late would reach the
   customer as well.
4. Every request is paced and starts only on a lease with a margin
   (`jobs.requests.paced`).

Errors propagate unchanged; deciding to retry, wait or dead-letter is the
runner's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from jobs.errors import InvoiceConflict, NotYet
from jobs.models import Invoice, InvoiceReceipt, keeper_of
from jobs.ports import Claim, InvoiceProvider, LedgerEntry, Limiter
from jobs.requests import paced
from jobs.verify import verify

UNVERIFIED_WHY = "unverified until its landing window has passed"
NOT_FOUND_WHY = "not found while an earlier create may still land"


async def create_invoice(
    invoice: Invoice,
    claim: Claim,
    *,
    provider: InvoiceProvider,
    ledger: LedgerEntry,
    limiter: Limiter,
) -> InvoiceReceipt:
    """Create `invoice` at most once, verify it if it must be, then send it if asked.

    Args:
        invoice: the validated invoice.
        claim: what the ledger knew when this job was taken.

    Returns:
        The receipt, from the ledger, the provider's lookup or a new create.

    Raises:
        InvoiceError: whatever the provider or the limiter raised.
        NotYet: acting now could create or send a duplicate; come back later.
    """
    receipt, unverified = claim.receipt, claim.unverified
    # Copies listed after the landing window had passed: a valid view for
    # the verification, which then needs no lookup of its own.
    view: Sequence[InvoiceReceipt] | None = None
    if receipt is not None and unverified and claim.now_ms < claim.verify_after_ms:
        raise NotYet((claim.verify_after_ms - claim.now_ms) / 1000, UNVERIFIED_WHY)
    if receipt is None and claim.create_maybe_landed:
        copies = await paced(limiter, ledger, partial(provider.find_all, invoice))
        receipt, unverified = await _adopt(copies, claim, ledger)
        view = copies if claim.now_ms >= claim.landing_until_ms else None
    if receipt is None:
        receipt = await _create(invoice, claim, provider=provider, ledger=ledger, limiter=limiter)
        unverified, view = claim.outcome_was_unknown, None
    if unverified:
        receipt = await verify(
            invoice,
            receipt,
            voided_ids=claim.voided_ids,
            copies=view,
            provider=provider,
            ledger=ledger,
            limiter=limiter,
        )
    if invoice.send and not receipt.sent and not receipt.voided:
        receipt = await _send(
            invoice, receipt, claim, provider=provider, ledger=ledger, limiter=limiter
        )
    return receipt


async def _adopt(
    copies: Sequence[InvoiceReceipt], claim: Claim, ledger: LedgerEntry
) -> tuple[InvoiceReceipt | None, bool]:
    """Adopt the copy a lookup found, or say why nothing may be created yet.

    Returns the adopted copy (or `None`: create it) and whether it is unverified.
    """
    found = keeper_of(copies)
    if found is None:
        if claim.now_ms < claim.landing_until_ms:
            raise NotYet((claim.landing_until_ms - claim.now_ms) / 1000, NOT_FOUND_WHY)
        return None, False
    # Twins the ledger never saw (an earlier run without a ledger) are resolved
    # like late landings.
    twins = sum(1 for c in copies if not c.voided) > 1
    unverified = claim.outcome_was_unknown or twins
    wait_s = await ledger.mark_created(found, verified=not unverified)
    if wait_s > 0:
        raise NotYet(wait_s, UNVERIFIED_WHY)
    return found, unverified


async def _create(
    invoice: Invoice,
    claim: Claim,
    *,
    provider: InvoiceProvider,
    ledger: LedgerEntry,
    limiter: Limiter,
) -> InvoiceReceipt:
    # The one validation per create, here rather than in `provider.create`:
    # whichever provider object it is given, this procedure never sends an
    # invalid invoice, and a refused invoice takes no slot and no ledger step.
    provider.validate(invoice)
    unknown = claim.outcome_was_unknown
    create = partial(provider.create, invoice, send_now=invoice.send and not unknown)
    try:
        receipt = await paced(limiter, ledger, create, before=ledger.mark_sending)
    except InvoiceConflict:
        # The provider already holds this number (Maast can be set to refuse
        # duplicates). If it is ours, an earlier attempt landed: adopt it.
        found = await paced(limiter, ledger, partial(provider.find, invoice))
        if found is None or not _same_total(found, invoice):
            raise
        receipt = found
    wait_s = await ledger.mark_created(receipt, verified=not unknown)
    if wait_s > 0:
        raise NotYet(wait_s, UNVERIFIED_WHY)
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
        found = await paced(limiter, ledger, partial(provider.find, invoice))
        if found is not None and found.sent:
            await ledger.mark_sent(found)
            return found
    send = partial(provider.send, receipt, invoice)
    sent = await paced(limiter, ledger, send, before=ledger.mark_send_started)
    await ledger.mark_sent(sent)
    return sent


def _same_total(receipt: InvoiceReceipt, invoice: Invoice) -> bool:
    return receipt.total is None or receipt.total == invoice.totals().total
