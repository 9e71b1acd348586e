"""A batch's callback: registered by the intake API, read back with its delivery attempts."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from worker.keys import Keys
from worker.replies import text

ATTEMPTS_KEPT = 500
"""Delivery attempts remembered per batch (the newest)."""


async def subscribe(
    redis: aioredis.Redis, keys: Keys, batch_id: str, url: str, *, each: bool
) -> None:
    """Give `batch_id` a callback: its completion (and with `each`, every outcome) is posted."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.batch(batch_id), mapping={"callback_url": url, "callback_each": int(each)})
        pipe.sadd(keys.webhook_batches(), batch_id)
        if each:
            pipe.zadd(keys.webhook_each(), {batch_id: 0})  # 0: not completed yet
        await pipe.execute()


async def attempts(redis: aioredis.Redis, keys: Keys, batch_id: str) -> list[dict[str, object]]:
    """Every recorded delivery attempt of the batch's webhooks, oldest first."""
    raw = await redis.lrange(keys.webhook_attempts(batch_id), 0, -1)  # type: ignore[misc]
    return [json.loads(text(item)) for item in raw]


def shown_url(url: str) -> str:
    """The callback URL as pages and responses show it: no credentials, no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
