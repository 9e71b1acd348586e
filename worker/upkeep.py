"""What a worker process does besides its jobs, once a second.

- its heartbeat record (`worker.fleet`): the dashboard tells a live worker
  from a dead one;
- the provider-call latency it measured (`worker.metrics.MetricsBuffer`),
  flushed to Redis in one pipeline, so `/metrics` in `invoicer web` covers
  the fleet;
- result webhooks (`worker.webhooks.dispatcher`): delivered by workers,
  which run whenever a batch makes progress, whether or not `invoicer web` does.

Each step fails alone (logged, retried next second): a Redis hiccup or a
receiver that hangs never stops jobs, and one step never stops another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis

from jobs.models import Provider
from worker.fleet import Heartbeat
from worker.keys import Keys
from worker.metrics import MetricsBuffer
from worker.outage import OUTAGE_ERRORS, Outage
from worker.settings import Settings
from worker.webhooks.dispatcher import Dispatcher

log = logging.getLogger("invoicer.worker")

INTERVAL_S = 1.0


class Upkeep:
    """The once-a-second steps of one worker process."""

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        providers: Sequence[Provider],
        holding: Callable[[], int],
        *,
        outage: Outage | None = None,
    ) -> None:
        keys = Keys(settings.redis_prefix)
        self.redis = redis
        self.keys = keys
        self.holding = holding
        self.outage = outage or Outage()
        self.heartbeat = Heartbeat(redis, keys, providers, concurrency=settings.concurrency)
        self.metrics = MetricsBuffer()
        secret = settings.webhook_secret
        self.webhooks = Dispatcher(redis, keys, secret.get_secret_value() if secret else None)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop."""
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        """Stop the loop, flush what is left, mark this worker stopped."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):  # Redis may be gone: nothing more to do then
            await self.metrics.flush(self.redis, self.keys)
            # A `--burst` worker leaves right after its last job: announce what
            # it finished (a batch's completion) before going.
            await asyncio.wait_for(self.webhooks.tick(), timeout=15)
        with contextlib.suppress(Exception):
            await self.heartbeat.stop()
        await self.webhooks.aclose()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_S)
            for step in (self._beat, self._flush, self.webhooks.tick):
                try:
                    await asyncio.wait_for(step(), timeout=30)
                except OUTAGE_ERRORS as error:  # one line per outage (worker.outage)
                    self.outage.failed(error)
                except Exception:
                    log.exception("upkeep step %s failed", getattr(step, "__name__", step))

    async def _beat(self) -> None:
        await self.heartbeat.beat(self.holding())

    async def _flush(self) -> None:
        await self.metrics.flush(self.redis, self.keys)
