"""What a worker process holds while it runs: clients, limiters, the ledger, leases.

`Runtime` is built once per process (`Runtime.start`), shared by the arq
workers of every provider queue in that process, and closed once. It also
runs the two background loops that make crash recovery fast (the heartbeat
that keeps this process's leases alive, and the reaper that hands the jobs of
dead workers back to the queue), and the probe of providers paused as
unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property

import redis.asyncio as aioredis

from jobs.models import Provider
from jobs.ports import InvoiceProvider
from jobs.providers import make_provider
from jobs.providers.base import ProviderConfig
from worker.held import HeldEntry
from worker.keys import ARQ_IN_PROGRESS, Keys
from worker.ledger import Ledger
from worker.limits import ProviderLimiter
from worker.metrics import TimedProvider
from worker.refused import Refusals
from worker.settings import ProviderSettings, Settings
from worker.upkeep import Upkeep

log = logging.getLogger("invoicer.worker")

REAP_INTERVAL_S = 1.0
PROBE_TICK_S = 1.0
"""How often a process looks whether a provider it serves is paused as unreachable."""

Step = Callable[[], Awaitable[None]]


def in_progress_s(settings: Settings) -> float:
    """How long arq's in-progress key lives without our heartbeat renewing it."""
    return 2 * settings.lease_s


def provider_config(settings: ProviderSettings) -> ProviderConfig:
    """The HTTP client configuration of one provider account.

    Raises:
        ConfigurationError: the provider's API key is not set.
    """
    return ProviderConfig(
        base_url=settings.base_url,
        api_key=settings.require_key().get_secret_value(),
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        max_connections=settings.max_connections,
    )


@dataclass
class Runtime:
    """Per-process state shared by the jobs of every queue this process drains."""

    settings: Settings
    redis: aioredis.Redis
    keys: Keys
    ledger: Ledger
    providers: dict[Provider, InvoiceProvider]
    limiters: dict[Provider, ProviderLimiter]
    holding: set[HeldEntry] = field(default_factory=set)
    upkeep: Upkeep | None = None
    """Heartbeat record, metrics flush, webhooks: once a second (`worker.upkeep`)."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls, settings: Settings, redis: aioredis.Redis, providers: list[Provider]
    ) -> Runtime:
        """Build clients and limiters for `providers` and start the lease loops."""
        keys = Keys(settings.redis_prefix)
        holding: set[HeldEntry] = set()
        upkeep = Upkeep(settings, redis, providers, lambda: len(holding))
        runtime = cls(
            settings=settings,
            redis=redis,
            keys=keys,
            ledger=Ledger(
                redis, keys, lease_s=settings.lease_s, landing_window_s=settings.landing_window_s
            ),
            providers={
                p: TimedProvider(
                    make_provider(p, provider_config(settings.provider(p))), p, upkeep.metrics
                )
                for p in providers
            },
            limiters={p: ProviderLimiter(redis, keys, settings.provider(p)) for p in providers},
            holding=holding,
            upkeep=upkeep,
        )
        upkeep.start()
        runtime._tasks = [
            asyncio.create_task(runtime._every(settings.lease_s / 3, runtime._heartbeat)),
            asyncio.create_task(runtime._every(REAP_INTERVAL_S, runtime._reap)),
            asyncio.create_task(runtime._every(PROBE_TICK_S, runtime._probe_unreachable)),
        ]
        return runtime

    @cached_property
    def refusals(self) -> Refusals:
        """Where jobs no worker may run go (`worker.refused`)."""
        return Refusals(self.redis, self.keys, self.ledger)

    async def close(self) -> None:
        """Stop the loops and close the HTTP clients."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.upkeep is not None:
            await self.upkeep.close()
        for client in self.providers.values():
            await client.aclose()

    async def _every(self, interval_s: float, step: Step) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await step()
            except Exception:  # a Redis hiccup must not kill the loop
                log.exception("background step %s failed", step.__name__)

    async def _heartbeat(self) -> None:
        held = list(self.holding)
        if not held:
            return
        await self.ledger.heartbeat(held)
        # arq's own claim on each job is kept short (see `in_progress_s`) and
        # renewed here while the job runs, so a SIGKILLed worker's jobs come
        # back in seconds, including those it took but had not leased yet.
        ttl_ms = int(in_progress_s(self.settings) * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in held:
                pipe.pexpire(ARQ_IN_PROGRESS + entry.job_id, ttl_ms)
            await pipe.execute()

    async def _probe_unreachable(self) -> None:
        # A provider paused as unreachable is probed (one process at a time)
        # and resumed at its first answer (`worker.reachability`).
        for provider, limiter in self.limiters.items():
            await limiter.reachability.probe(self.providers[provider], learn=limiter.record)

    async def _reap(self) -> None:
        for invoice_key in await self.ledger.reap_expired():
            log.warning(
                "lease expired %s: handed back to the queue for reconciliation", invoice_key
            )
