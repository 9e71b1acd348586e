"""Verification: looking an unverified invoice up again, and undoing late landings.

An invoice created (or adopted) after an unknown outcome may have a twin: a
request of ours that the provider processed after we gave up on it. Once its
landing window has passed, no such request can still land, so one lookup of
every copy with our number (`find_all`) shows them all. The keeper rule:

- a copy the customer was sent wins: the ledger's if it is sent, else the
  oldest sent copy;
- otherwise the ledger's copy is kept;
- every other live copy that is unsent is voided (Maast cancel, Stax
  delete); one that was sent, or that the provider will not void (paid),
  goes to the operator list with its id and status: it is never silent.

If the ledger's copy is found voided beside live ones, an earlier
verification of ours was interrupted after voiding it in favour of a sent
copy (or a person voided it): the live copies decide, as a lookup's
adoption would. If it is not listed at all (or nothing is live), the
listing may lag: nothing is voided on such a view, and verification is
tried again later; after `LISTING_TRIES` views the invoice goes to the
operator list, and a voided copy is never sent.

Pure decisions (`plan`) are apart from the requests (`verify`), which use the
ports only (docs/operations.md, "Verification and voiding").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from jobs.errors import CannotVoid, NotYet, PermanentError
from jobs.models import Invoice, InvoiceReceipt, keeper_of
from jobs.ports import Duplicate, InvoiceProvider, LedgerEntry, Limiter, Verification
from jobs.requests import paced

LISTING_TRIES = 3
"""Views without the ledger's copy before the invoice goes to the operator list."""
LISTING_RETRY_S = 30.0
"""How long a view that lacks the ledger's copy waits before the next one."""
SENT_WHY = "sent to the customer: it cannot be voided"


@dataclass(frozen=True)
class Plan:
    """What one view of the copies decides."""

    keeper: InvoiceReceipt | None
    """The copy kept; `None` when the ledger's copy is not among the live ones."""
    to_void: tuple[InvoiceReceipt, ...] = ()
    open: tuple[Duplicate, ...] = ()
    found_voided: tuple[Duplicate, ...] = ()


def plan(
    ours: InvoiceReceipt, copies: Sequence[InvoiceReceipt], voided_ids: frozenset[str]
) -> Plan:
    """The keeper rule over one `find_all` view (oldest first).

    Args:
        ours: the ledger's copy.
        copies: every copy the provider holds with our number, voided too.
        voided_ids: copies earlier verifications voided (not counted again).
    """
    live = [c for c in copies if not c.voided]
    listed = next((c for c in copies if c.provider_id == ours.provider_id), None)
    if listed is None or (listed.voided and not live):
        return Plan(keeper=None, found_voided=_found_voided(copies, ours, voided_ids))
    if listed.voided:
        # An earlier verification of ours, interrupted, voided the ledger's
        # copy in favour of a sent one (or a person voided it): the live
        # copies decide, by the same rule as a lookup's adoption.
        keeper = keeper_of(live)
        assert keeper is not None
    else:
        listed = listed.model_copy(update={"sent": listed.sent or ours.sent})
        live = [listed if c.provider_id == listed.provider_id else c for c in live]
        sent = [c for c in live if c.sent]
        keeper = listed if listed.sent or not sent else sent[0]
    others = [c for c in live if c.provider_id != keeper.provider_id]
    return Plan(
        keeper=keeper,
        to_void=tuple(c for c in others if not c.sent),
        open=tuple(_duplicate(c, SENT_WHY) for c in others if c.sent),
        found_voided=_found_voided(copies, keeper, voided_ids),
    )


def _found_voided(
    copies: Sequence[InvoiceReceipt], keeper: InvoiceReceipt, voided_ids: frozenset[str]
) -> tuple[Duplicate, ...]:
    """Voided copies other than the keeper that no verification counted yet."""
    return tuple(
        _duplicate(c)
        for c in copies
        if c.voided and c.provider_id != keeper.provider_id and c.provider_id not in voided_ids
    )


async def verify(
    invoice: Invoice,
    ours: InvoiceReceipt,
    *,
    voided_ids: frozenset[str],
    copies: Sequence[InvoiceReceipt] | None = None,
    provider: InvoiceProvider,
    ledger: LedgerEntry,
    limiter: Limiter,
) -> InvoiceReceipt:
    """Resolve the copies of an unverified invoice whose landing window has passed.

    Args:
        ours: the ledger's copy.
        copies: a `find_all` view taken after the landing window (saves a
            lookup); by default one is taken here.

    Returns:
        The keeper, recorded in the ledger (`mark_verified`).

    Raises:
        NotYet: the view lacks the ledger's copy; look again later.
        InvoiceError: a lookup or void failed transiently (or the provider
            refused the key): verification runs again on the next try.
    """
    if copies is None:
        copies = await paced(limiter, ledger, lambda: provider.find_all(invoice))
    decided = plan(ours, copies, voided_ids)
    if decided.keeper is None:
        return await _not_listed(ours, copies, decided, ledger)
    voided: list[Duplicate] = []
    refused: list[Duplicate] = []
    for copy in decided.to_void:
        try:
            done = await paced(limiter, ledger, partial(provider.void, copy))
        except CannotVoid as error:
            refused.append(
                _duplicate(copy, f"{error.invoice_status}: the provider will not void it")
            )
        except PermanentError as error:
            refused.append(_duplicate(copy, f"void refused: {error.describe()}"))
        else:
            voided.append(_duplicate(done))
    await ledger.mark_verified(
        Verification(
            keeper=decided.keeper,
            voided=tuple(voided),
            found_voided=decided.found_voided,
            open=(*decided.open, *refused),
        )
    )
    return decided.keeper


async def _not_listed(
    ours: InvoiceReceipt, copies: Sequence[InvoiceReceipt], decided: Plan, ledger: LedgerEntry
) -> InvoiceReceipt:
    why = f"the ledger's copy {ours.provider_id} is not among the live copies listed"
    tries = await ledger.mark_verify_later(why)
    if tries < LISTING_TRIES:
        raise NotYet(LISTING_RETRY_S, why)
    # Kept as listed: a copy that is voided (with nothing live beside it) is
    # recorded so, and is never sent.
    listed = next((c for c in copies if c.provider_id == ours.provider_id), ours)
    others = tuple(_duplicate(c) for c in copies if not c.voided)
    await ledger.mark_verified(
        Verification(
            keeper=listed,
            found_voided=decided.found_voided,
            open=others,
            why=f"{why} after {tries} lookups: look at the provider",
        )
    )
    return listed


def _duplicate(copy: InvoiceReceipt, why: str = "") -> Duplicate:
    return Duplicate(provider_id=copy.provider_id, status=copy.status, sent=copy.sent, why=why)
