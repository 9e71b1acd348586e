"""Providers: queue, pause state (`GET /v1/providers`), pause and resume; the worker fleet."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from jobs.models import Provider
from worker.fleet import read_workers
from worker.pauses import pause_provider, resume_provider
from worker.status import read_status
from worker.web.auth import ADMIN, READER
from worker.web.context import Context

router = APIRouter(prefix="/v1", tags=["providers"])


class Pause(BaseModel):
    """Why, and for how long (no minutes: until resumed)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="paused by operator", min_length=1, max_length=200)
    minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)


@router.get("/providers", dependencies=[READER])
async def providers(ctx: Context) -> list[dict[str, object]]:
    """Each provider: queue due/deferred, finished in the last minute, pause state."""
    snap = await read_status(
        ctx.redis, ctx.keys, batch=None, providers=list(Provider), accounts=ctx.accounts
    )
    return [p.as_dict() for p in snap.providers]


@router.post("/providers/{provider}/pause", dependencies=[ADMIN])
async def pause(ctx: Context, provider: Provider, body: Pause | None = None) -> dict[str, Any]:
    """Stop every worker from calling the provider; records stay queued (`invoicer pause`)."""
    body = body or Pause()
    ttl_s = body.minutes * 60 if body.minutes else None
    newly = await pause_provider(
        ctx.redis, ctx.keys, provider, ctx.account(provider), body.reason, ttl_s
    )
    return {"provider": provider.value, "paused": True, "changed": newly, "reason": body.reason}


@router.post("/providers/{provider}/resume", dependencies=[ADMIN])
async def resume(ctx: Context, provider: Provider) -> dict[str, Any]:
    """Let workers call the provider again, whatever paused it (`invoicer resume`)."""
    was = await resume_provider(ctx.redis, ctx.keys, provider, ctx.account(provider))
    return {"provider": provider.value, "paused": False, "was_paused": was}


@router.get("/workers", dependencies=[READER])
async def workers(ctx: Context) -> list[dict[str, object]]:
    """Every worker process seen in the last day: alive, dead (no heartbeat) or stopped."""
    return [w.as_dict() for w in await read_workers(ctx.redis, ctx.keys)]
