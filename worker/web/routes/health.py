"""`GET /healthz`: is this process up, and can it reach Redis? (No token needed.)"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from redis.exceptions import RedisError

from worker.web.context import Context
from worker.web.errors import ApiError

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The process answers and Redis answers."""

    status: Literal["ok"]
    redis: Literal["ok"]


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"description": "Redis does not answer"}},
)
async def healthz(ctx: Context) -> Health:
    """Liveness and readiness in one: 200 when Redis answers a PING, else 503."""
    try:
        await ctx.redis.ping()
    except (RedisError, OSError):
        raise ApiError(
            503,
            "redis_unavailable",
            "Redis does not answer",
            fix="check that Redis runs and INVOICER_REDIS_URL points at it",
        ) from None
    return Health(status="ok", redis="ok")
