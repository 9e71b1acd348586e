"""Batches: upload a file (`POST /v1/batches`), progress, the CSV report, cancel, webhooks."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from jobs.models import Provider
from jobs.sources import SourceError
from worker import api
from worker.cancel import cancel_batch
from worker.reader import IntakeFailed
from worker.replies import decoded, text
from worker.report import write_report
from worker.status import UnknownBatch, read_status
from worker.web.auth import ADMIN, READER
from worker.web.context import Context
from worker.web.errors import ApiError
from worker.web.intake import check_callback
from worker.web.routes.invoices import enqueued
from worker.web.routes.models import Enqueued
from worker.web.upload import spooled
from worker.webhooks.subscriptions import attempts, shown_url, subscribe

router = APIRouter(prefix="/v1/batches", tags=["batches"])

CHUNK_BYTES = 1024 * 1024
ERRORS_SHOWN = 1000
"""Record errors listed in the response (all are counted; all go to the dead-letter queue)."""
_UPLOAD_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The file (CSV or JSONL, as `invoicer enqueue` reads): the body itself, "
        "or the one file field of a form (`curl -F file=@month.csv`).",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@router.post(
    "",
    status_code=202,
    response_model=Enqueued,
    dependencies=[ADMIN],
    openapi_extra=_UPLOAD_DOC,
    responses={
        400: {"description": "a broken multipart body"},
        413: {"description": "larger than 1 GiB"},
        415: {"description": "not text/csv, application/x-ndjson or a form holding such a file"},
        422: {"description": "the file cannot be read at all (bad header, not UTF-8...)"},
    },
)
async def upload(
    request: Request,
    ctx: Context,
    provider: Annotated[Provider, Query(description="The provider to create them at.")],
    batch: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    send: bool = False,
    callback_url: Annotated[str | None, Query(min_length=1, max_length=2000)] = None,
    notify: Literal["batch", "each"] = "batch",
) -> Enqueued:
    """Enqueue a CSV or JSONL file, sent as the body or as a form's file, streamed to disk.

    The same reader, rules and per-line errors as `invoicer enqueue FILE`:
    invalid records are reported (the first 1,000 listed) and dead-lettered,
    the valid ones enqueued. A file is not all or nothing (docs/web.md).
    """
    if callback_url is not None:
        check_callback(callback_url, ctx.settings)
    async with spooled(request) as path:
        try:
            report = await api.enqueue_file(
                path,
                provider=provider,
                batch=batch,
                send=send,
                settings=ctx.settings,
                redis=ctx.redis,
            )
        except SourceError as exc:
            raise ApiError(
                422, "unreadable_file", str(exc), fix="fix the file as the message says"
            ) from None
        except IntakeFailed as exc:
            raise ApiError(503, "intake_failed", f"{exc}; sending the file again is safe") from None
    if callback_url is not None:
        await subscribe(ctx.redis, ctx.keys, report.batch_id, callback_url, each=notify == "each")
    result = enqueued(report, [], report.invalid)
    for problem in result.rejected + result.conflicts:
        problem.line, problem.index = (problem.index or 0) + 1, None
    result.rejected = result.rejected[:ERRORS_SHOWN]
    return result


@router.get("", dependencies=[READER])
async def recent(
    ctx: Context, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[dict[str, Any]]:
    """The most recent batches, newest first, with their counts."""
    ids = [text(b) for b in await ctx.redis.zrevrange(ctx.keys.batches(), 0, limit - 1)]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for batch_id in ids:
            pipe.hgetall(ctx.keys.batch(batch_id))
        infos = await pipe.execute()
    return [_summary(b, decoded(raw)) for b, raw in zip(ids, infos, strict=True) if raw]


@router.get("/{batch_id}", dependencies=[READER], responses={404: {"description": "no such batch"}})
async def show(ctx: Context, batch_id: str) -> dict[str, Any]:
    """Counts per state, rate and ETA (for the batch's provider), cancellation, callback."""
    try:
        snap = await read_status(
            ctx.redis, ctx.keys, batch=batch_id, providers=list(Provider), accounts=ctx.accounts
        )
    except UnknownBatch:
        raise _unknown(batch_id) from None
    info = decoded(await ctx.redis.hgetall(ctx.keys.batch(batch_id)))  # type: ignore[misc]
    return {**snap.as_dict(), **_summary(batch_id, info)}


@router.get(
    "/{batch_id}/report.csv",
    dependencies=[READER],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, 404: {"description": "no such batch"}},
)
async def report_csv(ctx: Context, batch_id: str) -> StreamingResponse:
    """One CSV row per invoice of the batch (the same file as `invoicer report`)."""
    # Memory up to CHUNK_BYTES, then disk: a 100,000-row report never sits in memory.
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by the response's generator)
        max_size=CHUNK_BYTES, mode="w+", newline="", encoding="utf-8"
    )
    try:
        await write_report(ctx.redis, ctx.keys, batch_id, spool)  # type: ignore[arg-type]
    except UnknownBatch:
        spool.close()
        raise _unknown(batch_id) from None
    spool.seek(0)

    async def chunks() -> AsyncIterator[str]:
        with spool:
            while chunk := spool.read(CHUNK_BYTES):
                yield chunk

    headers = {"Content-Disposition": f'attachment; filename="{batch_id}.csv"'}
    return StreamingResponse(chunks(), media_type="text/csv; charset=utf-8", headers=headers)


@router.post(
    "/{batch_id}/cancel", dependencies=[ADMIN], responses={404: {"description": "no such batch"}}
)
async def cancel(ctx: Context, batch_id: str) -> dict[str, Any]:
    """Discard every still-queued invoice of the batch; in-flight ones finish.

    The same as `invoicer cancel BATCH`; the counts say what happened to each.
    """
    try:
        report = await cancel_batch(ctx.redis, ctx.keys, batch_id)
    except UnknownBatch:
        raise _unknown(batch_id) from None
    return report.as_dict()


@router.get(
    "/{batch_id}/webhooks", dependencies=[READER], responses={404: {"description": "no such batch"}}
)
async def webhook_attempts(ctx: Context, batch_id: str) -> dict[str, Any]:
    """Every delivery attempt of the batch's result webhooks, oldest first."""
    info = decoded(await ctx.redis.hgetall(ctx.keys.batch(batch_id)))  # type: ignore[misc]
    if not info:
        raise _unknown(batch_id)
    url = info.get("callback_url")
    return {
        "batch_id": batch_id,
        "callback_url": shown_url(url) if url else None,
        "attempts": await attempts(ctx.redis, ctx.keys, batch_id),
    }


def _summary(batch_id: str, info: dict[str, str]) -> dict[str, Any]:
    url = info.get("callback_url")
    return {
        "batch_id": batch_id,
        "name": info.get("name"),
        "provider": info.get("provider"),
        "created_at_ms": int(info.get("created_at_ms") or 0),
        "total": int(info.get("total") or 0),
        "cancelled": int(info.get("cancelled") or 0),
        "cancelled_at_ms": int(info["cancelled_at_ms"]) if info.get("cancelled_at_ms") else None,
        "callback_url": shown_url(url) if url else None,
    }


def _unknown(batch_id: str) -> ApiError:
    return ApiError(
        404, "unknown_batch", f"no batch {batch_id!r}", fix="GET /v1/batches lists recent batches"
    )
