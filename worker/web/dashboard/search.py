"""Search by invoice number (`/invoices?number=`): where it stands and its whole timeline.

An invoice number names one invoice per provider account, so the number is
looked up under each provider's configured account (or, given a full
invoice key such as `maast@eu:INV-1`, under that one): exact lookups of
the ledger record and its history (`worker.ledger.Ledger`), never a scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from jobs.models import Provider
from worker.keys import InvoiceKey, invoice_key
from worker.ledger import Ledger, LedgerRecord
from worker.web.context import Context, WebContext
from worker.web.dashboard.access import Looking
from worker.web.dashboard.render import page

router = APIRouter()


@dataclass(frozen=True)
class Found:
    """One invoice: its ledger record and its events, oldest first."""

    record: LedgerRecord
    history: list[dict[str, object]]
    dead_lettered: bool


def candidate_keys(ctx: WebContext, text: str) -> list[str]:
    """The invoice keys `text` may mean: itself if it is a key, else the number at each provider."""
    try:
        return [str(InvoiceKey.parse(text))]
    except ValueError:
        return [invoice_key(p, ctx.account(p), text) for p in Provider]


async def find(ctx: WebContext, text: str) -> list[Found]:
    """Every invoice `text` names, with its timeline."""
    ledger = Ledger(ctx.redis, ctx.keys)
    records = await ledger.get_many(candidate_keys(ctx, text))
    return [
        Found(record=r, history=await ledger.history(r.invoice_key), dead_lettered=r.dead_lettered)
        for r in records
        if r is not None
    ]


@router.get("/invoices")
async def search(
    request: Request,
    ctx: Context,
    who: Looking,
    number: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """The search form, and what a number finds."""
    wanted = number.strip()
    found = await find(ctx, wanted) if wanted else []
    return page(request, who, "invoice.html", number=wanted, found=found)
