"""`POST /v1/invoices` (intake) and `GET /v1/invoices/{provider}/{number}` (one invoice)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from jobs.errors import ErrorInfo
from jobs.models import Provider
from jobs.sources import RecordError
from worker import api
from worker.enqueue import EnqueueReport
from worker.intake import Intake
from worker.keys import invoice_key
from worker.ledger import Ledger, LedgerRecord
from worker.web.auth import ADMIN, READER
from worker.web.context import Context
from worker.web.errors import ApiError
from worker.web.intake import (
    EnvelopeDoc,
    check_callback,
    checked_records,
    envelope_of,
    problems_of,
    read_body,
)
from worker.web.routes.models import Attempt, Enqueued, InvoiceRef, InvoiceView, Problem
from worker.webhooks.subscriptions import subscribe

router = APIRouter(prefix="/v1/invoices", tags=["invoices"])

NUMBER_PATTERN = r"^[A-Za-z0-9._/-]{1,64}$"

_INTAKE_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": EnvelopeDoc.model_json_schema()}},
    }
}


@router.post(
    "",
    status_code=202,
    response_model=Enqueued,
    dependencies=[ADMIN],
    openapi_extra=_INTAKE_DOC,
    responses={
        400: {"description": "not JSON"},
        409: {"description": "an invoice number is active with other content (nothing enqueued)"},
        413: {"description": "more than 1,000 invoices, or too large a body"},
        422: {"description": "invalid invoices (nothing enqueued unless partial=true)"},
    },
)
async def enqueue(
    request: Request,
    ctx: Context,
    partial: Annotated[
        bool, Query(description="Enqueue the valid invoices and report the invalid ones.")
    ] = False,
) -> Enqueued:
    """Enqueue one invoice or a list of at most 1,000 (all or nothing, unless `partial`).

    Idempotent on the invoice number: sending the same invoice again never
    makes a second one (it counts as a duplicate, or already created); the
    same number with other content while the first is queued or created is a
    409 naming the number. Without `partial`, an invalid invoice (422) or a
    conflict (409) means nothing of the list was written; with it, the others
    are enqueued and the problems reported.
    """
    envelope, invoices = envelope_of(await read_body(request))
    if envelope.callback_url is not None:
        check_callback(envelope.callback_url, ctx.settings)
    account = ctx.account(envelope.provider)
    intake = Intake(envelope.provider, account, envelope.send)
    good, bad = checked_records(invoices, intake)
    if bad and not partial:
        count = len({e.line for e in bad})
        raise ApiError(
            422,
            "invalid_invoices",
            f"{count} of {len(invoices)} invoices have problems: nothing was enqueued",
            fix="fix the listed fields and send again, or send with ?partial=true",
            problems=problems_of(bad),
        )
    items: list[Any] = sorted([*good, *bad], key=lambda r: r.line)
    try:
        report = await api.enqueue_invoices(
            items,
            provider=envelope.provider,
            batch=envelope.batch,
            send=envelope.send,
            settings=ctx.settings,
            redis=ctx.redis,
            atomic=not partial,
        )
    except api.ListRefused as refused:
        raise _conflict(enqueued(refused.report, [], [])) from None
    if envelope.callback_url is not None:
        each = envelope.notify == "each"
        await subscribe(ctx.redis, ctx.keys, report.batch_id, envelope.callback_url, each=each)
    refs = [
        InvoiceRef(
            index=r.line - 1,
            number=r.invoice.number,
            invoice_key=invoice_key(envelope.provider, account, r.invoice.number),
        )
        for r in good
    ]
    return enqueued(report, refs, bad)


def _conflict(refused: Enqueued) -> ApiError:
    """The 409 of a list refused for conflicts (nothing of it was written)."""
    numbers = ", ".join(c.invoice_number or "" for c in refused.conflicts)
    return ApiError(
        409,
        "conflict",
        f"invoice {numbers} is already queued or created with different content: "
        "nothing was enqueued",
        fix="give a changed invoice a new number (or void the first one) and send the list "
        "again, or send with ?partial=true to enqueue the others",
        problems=[c.model_dump() for c in refused.conflicts],
    )


def enqueued(report: EnqueueReport, refs: list[InvoiceRef], bad: list[RecordError]) -> Enqueued:
    """The response of an enqueue run (`bad`: the invalid records, as reported)."""
    return Enqueued(
        batch_id=report.batch_id,
        provider=report.provider.value,
        accepted=report.accepted,
        superseded=report.superseded,
        duplicates=report.duplicates,
        already_created=report.already_created,
        invoices=refs,
        rejected=[Problem.model_validate(p) for p in problems_of(bad)],
        rejected_count=len({e.line for e in bad}),
        conflicts=[
            Problem(index=line - 1, invoice_number=number, field="number", message=message)
            for line, number, message in report.conflicts
        ],
        dead_lettered=report.invalid_dead_lettered,
    )


@router.get(
    "/{provider}/{number:path}",
    response_model=InvoiceView,
    dependencies=[READER],
    responses={404: {"description": "no such invoice"}},
)
async def show(
    ctx: Context,
    provider: Provider,
    number: Annotated[str, Path(pattern=NUMBER_PATTERN, description="The invoice number.")],
) -> InvoiceView:
    """One invoice: its state, the provider's id and link, and every attempt."""
    key = invoice_key(provider, ctx.account(provider), number)
    ledger = Ledger(ctx.redis, ctx.keys)
    record = await ledger.get(key)
    if record is None:
        raise ApiError(
            404,
            "unknown_invoice",
            f"no invoice {number} for {provider.value}",
            fix="check the number and provider; GET /v1/batches/{id}/report.csv lists a batch",
        )
    history = [Attempt.model_validate(item) for item in await ledger.history(key)]
    return view(record, history)


def view(record: LedgerRecord, history: list[Attempt]) -> InvoiceView:
    """An invoice's ledger record and history as the API shows them."""
    receipt = record.receipt
    return InvoiceView(
        invoice_key=record.invoice_key,
        provider=record.provider.value,
        account=record.account,
        number=record.number,
        state=record.state.value,
        batch=record.batch,
        provider_id=None if receipt is None else receipt.provider_id,
        link=None if receipt is None else receipt.link,
        attempts=record.failures,
        error=None if record.error is None else _error(record.error),
        dead_lettered=record.dead_lettered,
        first_at_ms=record.first_at_ms,
        updated_at_ms=record.updated_at_ms,
        history=history,
    )


def _error(error: ErrorInfo) -> dict[str, Any]:
    return {
        "kind": error.kind,
        "reason": error.reason,
        "message": error.message,
        "status": error.status,
        "code": error.code,
        "field_errors": [{"field": f.field, "message": f.message} for f in error.field_errors],
    }
