"""Announce and deliver result webhooks from a Redis outbox (run by every worker process).

`Dispatcher.tick()` runs once a second in each worker process (see
`worker.upkeep`); a short Redis lock lets one process at a time do the work:

1. invoice outcomes: for batches that asked for them, each invoice that
   reached `created`, `sent` or `rejected` since the last tick (read from the
   provider's throughput index, past a cursor kept in Redis) becomes an
   `invoice.<state>` event;
2. completions: a subscribed batch with nothing left queued, sending or in
   doubt becomes one `batch.completed` event (removing it from the set of
   subscribed batches decides, atomically, that it is announced once);
3. deliveries: every due event of the outbox is POSTed, signed
   (`worker.webhooks.signing`); a 2xx ends it, anything else (or no answer
   in 10 s) is retried with exponential backoff (30 s doubling to an hour,
   with jitter) until a day has passed since the event. Every attempt is
   recorded in the batch's attempt list.

The outbox lives in Redis: a worker that dies mid-delivery leaves the event
due, and the next lock holder delivers it (a receiver may see it twice, with
the same `Invoicer-Delivery` id: deduplicate on it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx2
import redis.asyncio as aioredis

from jobs.models import Provider
from worker.keys import Keys
from worker.replies import decoded, text
from worker.webhooks.signing import HEADER, signature
from worker.webhooks.subscriptions import ATTEMPTS_KEPT, shown_url

log = logging.getLogger("invoicer.webhooks")

LOCK_MS = 15_000
DELIVERIES_PER_TICK = 20
OUTCOMES_PER_TICK = 500
TIMEOUT_S = 10.0
_PENDING = ("queued", "sending", "in_doubt")
_EACH_KEPT_MS = 120_000
"""A completed batch keeps getting its per-invoice events this long (stragglers)."""


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


class Dispatcher:
    """Finds webhook events and delivers them; one per worker process."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        secret: str | None,
        *,
        base_delay_s: float = 30.0,
        max_delay_s: float = 3600.0,
        give_up_s: float = 24 * 3600.0,
        client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.secret = secret
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.give_up_s = give_up_s
        self.owner = uuid.uuid4().hex
        self.client = client or httpx2.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)
        self._warned = False

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()

    async def tick(self) -> None:
        """One round: outcomes, completions, due deliveries (if this process holds the lock)."""
        if not await self._locked():
            return
        now = int(time.time() * 1000)
        await self._outcomes(now)
        await self._completions(now)
        await self._deliver_due(now)

    async def _locked(self) -> bool:
        lock = self.keys.webhook_lock()
        if await self.redis.set(lock, self.owner, nx=True, px=LOCK_MS):
            return True
        if text(await self.redis.get(lock)) == self.owner:
            await self.redis.pexpire(lock, LOCK_MS)
            return True
        return False

    # -- events ---------------------------------------------------------------

    async def _outcomes(self, now: int) -> None:
        each = {
            text(k): float(v)
            for k, v in await self.redis.zrange(self.keys.webhook_each(), 0, -1, withscores=True)
        }
        for provider in Provider:
            cursor_key = self.keys.webhook_cursor(provider)
            if not each:
                await self.redis.set(cursor_key, now)  # nothing wants them: skip ahead
                continue
            cursor = int(text(await self.redis.get(cursor_key)) or now)
            found = await self.redis.zrangebyscore(
                self.keys.throughput(provider),
                f"({cursor}",
                now,
                start=0,
                num=OUTCOMES_PER_TICK,
                withscores=True,
            )
            if found:
                await self._announce_outcomes([(text(m), int(s)) for m, s in found], each)
            last = int(found[-1][1]) if len(found) == OUTCOMES_PER_TICK else now
            await self.redis.set(cursor_key, last)
        done = [b for b, completed in each.items() if 0 < completed < now - _EACH_KEPT_MS]
        if done:
            await self.redis.zrem(self.keys.webhook_each(), *done)

    async def _announce_outcomes(
        self, found: list[tuple[str, int]], each: Mapping[str, float]
    ) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for member, _ in found:
                ik = member.rpartition("|")[0]
                pipe.hmget(self.keys.ledger(ik), ["batch", "number", "receipt", "error"])
            rows = await pipe.execute()
        for (member, at_ms), row in zip(found, rows, strict=True):
            ik, _, state = member.rpartition("|")
            batch, number, receipt, error = (text(v) for v in row)
            if batch not in each:
                continue
            data: dict[str, Any] = {
                "invoice_key": ik,
                "number": number,
                "batch_id": batch,
                "state": state,
                "at": _iso(at_ms),
                "receipt": json.loads(receipt) if receipt and state != "rejected" else None,
                "error": json.loads(error) if error and state == "rejected" else None,
            }
            await self._put(batch, f"invoice.{state}", data)

    async def _completions(self, now: int) -> None:
        batches = [text(b) for b in await self.redis.smembers(self.keys.webhook_batches())]  # type: ignore[misc]
        if not batches:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for batch in batches:
                pipe.hgetall(self.keys.batch(batch))
            infos = [decoded(raw) for raw in await pipe.execute()]
        for batch, info in zip(batches, infos, strict=True):
            if not info or sum(int(info.get(s) or 0) for s in _PENDING) > 0:
                continue
            if not await self.redis.srem(self.keys.webhook_batches(), batch):  # type: ignore[misc]
                continue  # another process announced it
            if batch in {text(b) for b in await self.redis.zrange(self.keys.webhook_each(), 0, -1)}:
                await self.redis.zadd(self.keys.webhook_each(), {batch: now}, xx=True)
            counts = {k: int(v) for k, v in info.items() if k in _STATES}
            data = {
                "batch_id": batch,
                "name": info.get("name"),
                "provider": info.get("provider"),
                "total": int(info.get("total") or sum(counts.values())),
                "counts": counts,
                "cancelled": int(info.get("cancelled") or 0),
                "report": f"/v1/batches/{batch}/report.csv",
            }
            await self._put(batch, "batch.completed", data, url=info.get("callback_url"))

    async def _put(
        self, batch: str, event: str, data: dict[str, Any], *, url: str | None = None
    ) -> None:
        """Add one event to the outbox, due now."""
        if url is None:
            url = text(await self.redis.hget(self.keys.batch(batch), "callback_url"))  # type: ignore[misc]
        if not url:
            return
        delivery = uuid.uuid4().hex
        now = int(time.time() * 1000)
        body = json.dumps({"id": delivery, "type": event, "created_at": _iso(now), "data": data})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.webhook_delivery(delivery),
                mapping={
                    "url": url,
                    "body": body,
                    "batch": batch,
                    "event": event,
                    "attempts": 0,
                    "created_at_ms": now,
                },
            )
            pipe.zadd(self.keys.webhook_outbox(), {delivery: now})
            await pipe.execute()

    # -- delivery -------------------------------------------------------------

    async def _deliver_due(self, now: int) -> None:
        due = [
            text(d)
            for d in await self.redis.zrangebyscore(
                self.keys.webhook_outbox(), "-inf", now, start=0, num=DELIVERIES_PER_TICK
            )
        ]
        if not due:
            return
        if self.secret is None:
            if not self._warned:
                log.warning(
                    "webhooks waiting: set INVOICER_WEBHOOK_SECRET on the workers to send them"
                )
                self._warned = True
            return
        await asyncio.gather(*(self._deliver(d) for d in due))

    async def _deliver(self, delivery: str) -> None:
        raw = decoded(await self.redis.hgetall(self.keys.webhook_delivery(delivery)))  # type: ignore[misc]
        if not raw:
            await self.redis.zrem(self.keys.webhook_outbox(), delivery)
            return
        assert self.secret is not None
        body = raw["body"].encode()
        attempt = int(raw.get("attempts") or 0) + 1
        headers = {
            "Content-Type": "application/json",
            HEADER: signature(self.secret, body),
            "Invoicer-Event": raw["event"],
            "Invoicer-Delivery": delivery,
            "User-Agent": "invoicer-webhooks",
        }
        status: int | None = None
        error: str | None = None
        try:
            response = await self.client.post(raw["url"], content=body, headers=headers)
            status = response.status_code
        except httpx2.HTTPError as exc:
            error = type(exc).__name__
        now = int(time.time() * 1000)
        record: dict[str, Any] = {
            "at_ms": now,
            "delivery_id": delivery,
            "event": raw["event"],
            "url": shown_url(raw["url"]),
            "attempt": attempt,
            "status": status,
            "error": error,
        }
        if status is not None and 200 <= status < 300:
            record["outcome"] = "delivered"
            await self._finish(delivery, raw["batch"], record)
        elif now - int(raw.get("created_at_ms") or now) >= self.give_up_s * 1000:
            record["outcome"] = "gave_up"
            log.warning(
                "webhook %s to %s given up after %d attempts", raw["event"], record["url"], attempt
            )
            await self._finish(delivery, raw["batch"], record)
        else:
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
            next_at = now + int(delay * random.uniform(0.8, 1.2) * 1000)
            record.update(outcome="retrying", next_at_ms=next_at)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.webhook_delivery(delivery), "attempts", str(attempt))
                pipe.zadd(self.keys.webhook_outbox(), {delivery: next_at})
                self._record(pipe, raw["batch"], record)
                await pipe.execute()

    async def _finish(self, delivery: str, batch: str, record: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.webhook_outbox(), delivery)
            pipe.delete(self.keys.webhook_delivery(delivery))
            self._record(pipe, batch, record)
            await pipe.execute()

    def _record(self, pipe: Any, batch: str, record: dict[str, Any]) -> None:
        key = self.keys.webhook_attempts(batch)
        pipe.rpush(key, json.dumps(record))
        pipe.ltrim(key, -ATTEMPTS_KEPT, -1)


_STATES = ("queued", "sending", "created", "sent", "in_doubt", "rejected", "discarded")
