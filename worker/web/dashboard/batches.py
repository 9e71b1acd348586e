"""Batches (`/batches`, `/batches/{id}`): progress, counts per state, rate, ETA, cancel.

Counts, rate and ETA are `worker.status.read_status` for the batch (its
maintained counters: the same numbers as `invoicer status --batch`); the
list reads the newest batch ids from their index and each batch's counter
hash in one pipelined round trip. The CSV report is the API's
(`GET /v1/batches/{id}/report.csv`, `worker.report`), which the session
cookie may read; cancel is `worker.cancel.cancel_batch`, as
`invoicer cancel BATCH` and `POST /v1/batches/{id}/cancel`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from jobs.models import Provider
from worker.cancel import cancel_batch
from worker.dlq import DeadLetters
from worker.ledger import State
from worker.replies import decoded, text
from worker.status import PENDING_STATES, StatusSnapshot, UnknownBatch, read_status
from worker.web.context import Context, WebContext
from worker.web.dashboard.access import Acting, Looking
from worker.web.dashboard.render import back, fragment, page
from worker.web.errors import ApiError
from worker.webhooks.subscriptions import shown_url

router = APIRouter()

PAGE = 50
"""Batches per page of the list."""
_EXTRA = ("cancelled", "voided", "duplicates_open")
"""Batch counters beyond the states: invoices cancelled, duplicate copies found at
the provider and voided, copies that could not be voided (sent or paid)."""


@dataclass(frozen=True)
class BatchRow:
    """One batch as its counter hash says."""

    batch_id: str
    name: str | None
    provider: str | None
    created_at_ms: int
    counts: dict[State, int]
    total: int
    extra: dict[str, int]
    """Counters beyond the states, when present (`_EXTRA`)."""

    @classmethod
    def of(cls, batch_id: str, info: Mapping[str, str]) -> BatchRow:
        """Read one batch's counter hash."""
        counts = {s: _int(info.get(s.value)) for s in State}
        extra = {k: _int(info.get(k)) for k in _EXTRA if info.get(k)}
        return cls(
            batch_id=batch_id,
            name=info.get("name") or None,
            provider=info.get("provider") or None,
            created_at_ms=_int(info.get("created_at_ms")),
            counts=counts,
            total=_int(info.get("total")) or sum(counts.values()),
            extra=extra,
        )

    @property
    def remaining(self) -> int:
        """Invoices still to be worked on."""
        return sum(self.counts[s] for s in PENDING_STATES)

    @property
    def done(self) -> int:
        """Invoices that reached an end (created, sent, rejected, discarded)."""
        return max(0, self.total - self.remaining)


async def recent_batches(ctx: WebContext, *, offset: int, limit: int) -> tuple[list[BatchRow], int]:
    """A page of batches, newest first, and how many batches there are."""
    index = ctx.keys.batches()
    ids = [text(b) for b in await ctx.redis.zrevrange(index, offset, offset + limit - 1)]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for batch_id in ids:
            pipe.hgetall(ctx.keys.batch(batch_id))
        pipe.zcard(index)
        *infos, count = await pipe.execute()
    rows = [BatchRow.of(b, decoded(raw)) for b, raw in zip(ids, infos, strict=True) if raw]
    return rows, int(count)


@dataclass(frozen=True)
class BatchView:
    """Everything the batch page shows."""

    row: BatchRow
    snapshot: StatusSnapshot
    dead_letters: int
    cancelled_at_ms: int | None
    callback_url: str | None


async def read_batch(ctx: WebContext, batch_id: str) -> BatchView:
    """The batch's counters, rate and ETA; 404 when there is no such batch."""
    try:
        snapshot = await read_status(
            ctx.redis, ctx.keys, batch=batch_id, providers=list(Provider), accounts=ctx.accounts
        )
    except UnknownBatch:
        raise ApiError(
            404, "unknown_batch", f"no batch {batch_id!r}", fix="see /batches for recent ones"
        ) from None
    info = decoded(await ctx.redis.hgetall(ctx.keys.batch(batch_id)))  # type: ignore[misc]
    url = info.get("callback_url")
    return BatchView(
        row=BatchRow.of(batch_id, info),
        snapshot=snapshot,
        dead_letters=await DeadLetters(ctx.redis, ctx.keys).count(batch=batch_id),
        cancelled_at_ms=_int(info.get("cancelled_at_ms")) or None,
        callback_url=shown_url(url) if url else None,
    )


Offset = Annotated[int, Query(ge=0, le=10_000_000)]


@router.get("/batches")
async def batches(request: Request, ctx: Context, who: Looking, offset: Offset = 0) -> Response:
    """The batches, newest first, each with its progress."""
    rows, count = await recent_batches(ctx, offset=offset, limit=PAGE)
    return page(request, who, "batches.html", rows=rows, count=count, offset=offset, page_size=PAGE)


@router.get("/batches/live")
async def batches_live(
    request: Request, ctx: Context, who: Looking, offset: Offset = 0
) -> Response:
    """The list's live part."""
    rows, count = await recent_batches(ctx, offset=offset, limit=PAGE)
    return fragment(
        request, who, "_batches_live.html", rows=rows, count=count, offset=offset, page_size=PAGE
    )


@router.get("/batches/{batch_id}")
async def batch(request: Request, ctx: Context, who: Looking, batch_id: str) -> Response:
    """One batch: progress bar, counts per state, rate and ETA, its report, cancel."""
    return page(request, who, "batch.html", view=await read_batch(ctx, batch_id))


@router.get("/batches/{batch_id}/live")
async def batch_live(request: Request, ctx: Context, who: Looking, batch_id: str) -> Response:
    """The batch page's live part."""
    return fragment(request, who, "_batch_live.html", view=await read_batch(ctx, batch_id))


@router.post("/batches/{batch_id}/cancel")
async def cancel(ctx: Context, who: Acting, batch_id: str) -> Response:
    """Discard every still-queued invoice of the batch; in-flight ones finish."""
    try:
        report = await cancel_batch(ctx.redis, ctx.keys, batch_id)
    except UnknownBatch:
        raise ApiError(404, "unknown_batch", f"no batch {batch_id!r}") from None
    counts = report.as_dict()
    message = f"batch {batch_id}: {report.cancelled:,} invoices cancelled"
    if report.left_running:
        message += f", {report.left_running:,} in flight or in doubt left to finish"
    if counts.get("send_cancelled"):
        message += f", {counts['send_cancelled']:,} created drafts will not be sent"
    return back(f"/batches/{batch_id}", message)


def _int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0
