"""Dead letters: list (filtered, paged), show, requeue (with a corrected payload), discard, bulk."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from jobs.models import Provider
from worker.dead_letter import DeadLetter
from worker.dlq import DeadLetters
from worker.enqueue import EnqueueOutcome
from worker.intake import Intake
from worker.times import iso_ms
from worker.web.auth import ADMIN, READER
from worker.web.context import Context
from worker.web.errors import ApiError
from worker.web.intake import checked_records, parse_model, problems_of, read_body

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])


class Requeue(BaseModel):
    """Optionally, the corrected invoice (same number), in any shape a JSONL line may take."""

    model_config = ConfigDict(extra="forbid")

    payload: dict[str, Any] | None = Field(default=None, description="The corrected invoice.")


class Bulk(BaseModel):
    """Which dead letters a bulk action takes: a batch, a reason, or both (or all)."""

    model_config = ConfigDict(extra="forbid")

    batch: str | None = Field(default=None, min_length=1)
    reason: str | None = Field(default=None, min_length=1)
    all: bool = Field(default=False, description="Every dead letter (when neither is given).")


@router.get("", dependencies=[READER])
async def list_entries(
    ctx: Context,
    reason: Annotated[str | None, Query(min_length=1)] = None,
    batch: Annotated[str | None, Query(min_length=1)] = None,
    provider: Provider | None = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Dead letters, newest first, filtered by reason, batch and provider; paged.

    Each combination of filters has its own maintained index: a page costs
    the same few reads with 10 dead letters or 100,000.
    """
    queue = DeadLetters(ctx.redis, ctx.keys)
    entries = await queue.list(
        batch=batch, reason=reason, provider=provider, offset=offset, limit=limit
    )
    return {
        "total": await queue.count(),
        "matching": await queue.count(batch=batch, reason=reason, provider=provider),
        "offset": offset,
        "limit": limit,
        "entries": [entry_view(e) for e in entries],
    }


@router.post("/requeue", dependencies=[ADMIN])
async def requeue_many(ctx: Context, body: Bulk) -> dict[str, Any]:
    """Requeue every dead letter of a batch and/or reason (entries that need a corrected
    payload stay)."""
    _check_bulk(body)
    counts = await DeadLetters(ctx.redis, ctx.keys).requeue_many(
        batch=body.batch, reason=body.reason, all=body.all
    )
    return {"requeued": {outcome.value: n for outcome, n in counts.items()}}


@router.post("/discard", dependencies=[ADMIN])
async def discard_many(ctx: Context, body: Bulk) -> dict[str, Any]:
    """Discard every dead letter of a batch and/or reason."""
    _check_bulk(body)
    discarded = await DeadLetters(ctx.redis, ctx.keys).discard_many(
        batch=body.batch, reason=body.reason, all=body.all
    )
    return {"discarded": discarded}


@router.get("/{invoice_key:path}", dependencies=[READER], responses={404: {"description": "none"}})
async def show(ctx: Context, invoice_key: str) -> dict[str, Any]:
    """One dead letter: the error, the field errors, the payload."""
    return entry_view(await _entry(ctx, invoice_key))


@router.post(
    "/{invoice_key:path}/requeue",
    dependencies=[ADMIN],
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": Requeue.model_json_schema()}},
        }
    },
    responses={404: {"description": "none"}, 409: {"description": "conflict"}},
)
async def requeue(ctx: Context, invoice_key: str, request: Request) -> dict[str, Any]:
    """Requeue one dead letter, optionally with a corrected payload (`{"payload": {...}}`)."""
    entry = await _entry(ctx, invoice_key)
    raw = await read_body(request)
    body = parse_model(raw, Requeue) if raw.strip() else Requeue()
    corrected = None
    if body.payload is not None:
        good, bad = checked_records([body.payload], Intake(entry.provider))
        if bad:
            raise ApiError(
                422,
                "invalid_payload",
                "the corrected invoice has problems: nothing was requeued",
                problems=problems_of(bad),
            )
        corrected = good[0].invoice
    try:
        outcome = await DeadLetters(ctx.redis, ctx.keys).requeue(invoice_key, payload=corrected)
    except KeyError:
        raise _missing(invoice_key) from None
    except ValueError as exc:
        raise ApiError(422, "invalid_payload", str(exc), fix="send a corrected payload") from None
    if outcome is EnqueueOutcome.CONFLICT:
        raise ApiError(409, "conflict", f"{invoice_key} is active with other content: not requeued")
    return {"invoice_key": invoice_key, "outcome": outcome.value}


@router.post(
    "/{invoice_key:path}/discard", dependencies=[ADMIN], responses={404: {"description": "none"}}
)
async def discard(ctx: Context, invoice_key: str) -> dict[str, Any]:
    """Give up on one dead letter (`rejected|in_doubt -> discarded`)."""
    if not await DeadLetters(ctx.redis, ctx.keys).discard(invoice_key):
        raise _missing(invoice_key)
    return {"invoice_key": invoice_key, "discarded": True}


def entry_view(e: DeadLetter) -> dict[str, Any]:
    """A dead letter as the API shows it."""
    return {
        "invoice_key": e.invoice_key,
        "provider": e.provider.value,
        "number": e.number,
        "batch": e.batch,
        "reason": e.reason,
        "kind": e.kind,
        "status": e.status,
        "code": e.code,
        "message": e.message,
        "field_errors": [{"field": f.field, "message": f.message} for f in e.field_errors],
        "attempts": e.attempts,
        "first_at": iso_ms(e.first_at_ms) if e.first_at_ms else None,
        "last_at": iso_ms(e.last_at_ms) if e.last_at_ms else None,
        "payload": e.payload,
    }


async def _entry(ctx: Context, invoice_key: str) -> DeadLetter:
    entry = await DeadLetters(ctx.redis, ctx.keys).get(invoice_key)
    if entry is None:
        raise _missing(invoice_key)
    return entry


def _missing(invoice_key: str) -> ApiError:
    return ApiError(
        404,
        "unknown_dead_letter",
        f"no dead letter {invoice_key!r}",
        fix="GET /v1/dead-letters lists them",
    )


def _check_bulk(body: Bulk) -> None:
    if body.batch is None and body.reason is None and not body.all:
        raise ApiError(
            422,
            "invalid_request",
            "name a batch or a reason (or set all to true)",
            problems=[{"field": "batch", "message": "give batch, reason or all"}],
        )
