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
from worker.epoch import Epoch, NewServer, RecoveryParams, with_run_id
from worker.held import HeldEntry
from worker.journal import HORIZON_S, Journal, reassert
from worker.keys import ARQ_IN_PROGRESS, Keys
from worker.ledger import Ledger
from worker.limits import ProviderLimiter
from worker.lua import script_env
from worker.metrics import TimedProvider
from worker.outage import OUTAGE_ERRORS, Outage
from worker.refused import Refusals
from worker.settings import ProviderSettings, Settings
from worker.upkeep import Upkeep

log = logging.getLogger("invoicer.worker")

REAP_INTERVAL_S = 1.0
PROBE_TICK_S = 1.0
"""How often a process looks whether a provider it serves is paused as unreachable."""
STARTUP_WAIT_S = 30.0
"""How long a worker starting waits for a Redis that does not answer yet."""
REAP_LOG_KEYS = 5
"""Invoice keys named in the reaper's log line (the rest are counted)."""

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
    outage: Outage = field(default_factory=Outage)
    """Whether Redis is reachable: every loop and job of the process reports to it."""
    journal: Journal = field(default_factory=Journal)
    """Requests sent lately, re-asserted if Redis comes back without them."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        redis: aioredis.Redis,
        providers: list[Provider],
        *,
        outage: Outage | None = None,
    ) -> Runtime:
        """Build clients and limiters for `providers` and start the lease loops.

        Args:
            outage: the process's, if it already met Redis (`worker.outage`).
        """
        keys = Keys(settings.redis_prefix)
        holding: set[HeldEntry] = set()
        outage = outage or Outage()
        upkeep = Upkeep(settings, redis, providers, lambda: len(holding), outage=outage)
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
            outage=outage,
        )
        await runtime._check_redis()
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

    async def _check_redis(self) -> None:
        """Check the Redis instance before the first job (`worker.epoch`): its
        persistence is logged, and a new instance is recovered from, now.

        A Redis that is not up yet is waited for, `STARTUP_WAIT_S` at most
        (the caller then reports it as a configuration error).
        """
        epoch = Epoch.of(self.redis)
        epoch.configure(
            RecoveryParams(
                lease_ms=int(self.settings.lease_s * 1000),
                window_ms=int(self.settings.landing_window_s * 1000),
                concurrency=self.settings.concurrency,
                head_extra=self.settings.recovery_extra,
                worker=True,
            )
        )
        self.ledger.transitions.on_request = self.journal.request_leaving
        epoch.on_new_server(self._reassert)
        env = script_env(self.keys)
        await self.outage.retrying(lambda: epoch.env(env), give_up_after_s=STARTUP_WAIT_S)

    async def _reassert(self, found: NewServer) -> None:
        """Redis came back as an instance that may have lost writes: what this
        process holds or sent lately is looked up before any create (`worker.journal`)."""
        if not found.lossy:
            return
        pairs = [(sent.invoice_key, sent.job_id) for sent in self.journal.recent()]
        pairs += [(entry.invoice_key, entry.job_id) for entry in self.holding]
        t = self.ledger.transitions
        marked = await reassert(
            t.scripts.reassert,
            with_run_id(t.env, found.run_id),
            dict.fromkeys(pairs),
            lease_ms=t.lease_ms,
            window_ms=t.window_ms,
        )
        log.warning(
            "re-asserted %d invoice(s) held or sent from here since Redis last had them on disk: "
            "each is looked up before any create",
            marked,
        )

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
            except OUTAGE_ERRORS as error:  # logged once per outage, not per step
                self.outage.failed(error)
            except Exception:  # nothing may kill the loop
                log.exception("background step %s failed", step.__name__)

    async def _heartbeat(self) -> None:
        last_ok = Epoch.of(self.redis).last_ok
        if last_ok is not None:
            self.journal.forget_before(last_ok - HORIZON_S)
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
        reaped = await self.ledger.reap_expired()
        if not reaped:
            return
        # One line per pass: after an outage longer than a lease, every
        # invoice that was in flight expires at once.
        shown = ", ".join(reaped[:REAP_LOG_KEYS]) + (", ..." if len(reaped) > REAP_LOG_KEYS else "")
        log.warning(
            "lease expired for %d invoice(s), handed back to the queue for reconciliation: %s",
            len(reaped),
            shown,
        )
