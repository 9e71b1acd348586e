"""arq wiring: worker settings built from `Settings`, one queue per provider.

Two ways in:
- `invoicer worker` calls `run_workers()`: one process drains the queue of
  every provider it is given, one arq `Worker` per queue over one shared
  `Runtime`, with our own signal handling (SIGTERM: stop taking jobs, finish
  in-flight calls within `shutdown_wait_s`, then cancel; a cancelled create
  is reconciled by lookup on its next claim, so nothing is created twice).
- `arq worker.app.WorkerSettings` for arq users: the Maast queue, or the
  provider named by `INVOICER_ARQ_PROVIDER` (`StaxWorkerSettings` and
  `MaastWorkerSettings` name one explicitly). Settings are read when arq asks
  for the class, not at import.

arq's defaults that work against us and what we set instead: JSON jobs, never
pickle; a 20 ms poll instead of 500 ms (pickup latency); `max_tries` far above
our own budget (arq counts rate-limit deferrals as tries); `keep_result=0`
(the ledger, not arq's result key, is the record); a job timeout above the
worst case of our own bounded calls, because arq's timeout is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypedDict

import redis.asyncio as aioredis
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker, func
from redis.asyncio import ConnectionPool

from jobs.models import Provider
from worker.arq_job import JOB_FUNCTION, MAX_TRIES, deserialize_job, serialize_job
from worker.arq_loop import PollLoop
from worker.arq_worker import BatchStartWorker, BurstStopped
from worker.burst import Stalled, WorkerRun, stalled_by
from worker.embedded import with_redis
from worker.keys import Keys
from worker.observability import job_reporting, protect, setup_sentry
from worker.outage import Outage, retried_after_outage
from worker.runner import create_invoice_job
from worker.runtime import STARTUP_WAIT_S, Runtime
from worker.settings import Settings, load_settings

log = logging.getLogger("invoicer.worker")


CALL_TIMEOUT_S = 15.0
"""A Redis call of a worker still unanswered this long is an outage (`worker_pool`)."""
OWN_TIMEOUT_MARGIN_S = 5.0
"""A job still running this long before arq's timeout is retried by us instead
(`worker.outage.retried_after_outage`): arq's timeout would drop it."""


def job_timeout_s(settings: Settings) -> float:
    """Upper bound of one job: lookup, create and send, each with a limiter wait."""
    worst = max(s.connect_timeout_s + s.read_timeout_s for s in (settings.maast, settings.stax))
    return 3 * (worst + 10.0) + 5.0


def worker_options(settings: Settings, provider: Provider) -> dict[str, Any]:
    """Keyword arguments of arq's `Worker` for one provider queue."""
    return {
        "functions": [
            func(
                job_reporting(
                    JOB_FUNCTION,
                    retried_after_outage(
                        create_invoice_job,
                        timeout_s=job_timeout_s(settings) - OWN_TIMEOUT_MARGIN_S,
                    ),
                ),
                name=JOB_FUNCTION,
                max_tries=MAX_TRIES,
                timeout=job_timeout_s(settings),
            )
        ],
        "queue_name": Keys(settings.redis_prefix).queue(provider),
        "max_jobs": settings.concurrency,
        "poll_delay": settings.poll_delay_s,
        "job_timeout": job_timeout_s(settings),
        "keep_result": 0,
        "max_tries": MAX_TRIES,
        "job_completion_wait": settings.shutdown_wait_s,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
        "health_check_interval": 10,
        "health_check_key": Keys(settings.redis_prefix).health(provider),
    }


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings from our Redis URL (embedded Redis resolved by the caller)."""
    if settings.redis_url is None:
        raise RuntimeError("resolve the Redis URL (embedded or configured) before building workers")
    return RedisSettings.from_dsn(settings.redis_url.get_secret_value())


async def run_workers(
    settings: Settings,
    providers: Sequence[Provider],
    *,
    burst: bool = False,
    on_signal: Callable[[], None] | None = None,
) -> WorkerRun:
    """Drain the queues of `providers` in this process until stopped (or empty, with `burst`).

    SIGINT and SIGTERM make them finish in-flight jobs and take no new ones;
    `on_signal` is told too (`invoicer demo --serve` then stops its dashboard).

    Returns:
        What this process did: how many jobs it ran (arq's count: complete,
        failed or retried) and, with `burst`, the queues it left behind a
        pause with no end (`worker.burst`).
    """
    protect(settings)
    setup_sentry(settings.sentry_dsn)
    outage = Outage()
    pool = worker_pool(settings)
    await redis_up(pool, outage)
    runtime = await Runtime.start(settings, pool, list(providers), outage=outage)
    workers = [_worker(settings, p, pool, runtime, burst=burst) for p in providers]
    _install_signal_handlers(workers, on_signal)
    try:
        stopped = await asyncio.gather(*(_drain(w) for w in workers))
    finally:
        for w in workers:
            await asyncio.gather(*w.tasks.values(), return_exceptions=True)
        await runtime.close()
        await pool.aclose()
    jobs = sum(w.jobs_complete + w.jobs_failed + w.jobs_retried for w in workers)
    return WorkerRun(jobs=jobs, stalled=tuple(q for q in stopped if q is not None))


async def redis_up(redis: aioredis.Redis, outage: Outage | None = None) -> None:
    """Wait for a Redis that does not answer yet (a supervisor started it with
    us), `STARTUP_WAIT_S` at most, logging one line; a refused password is
    not waited for (`worker.outage.Outage.retrying`)."""
    await (outage or Outage()).retrying(redis.ping, give_up_after_s=STARTUP_WAIT_S)


def worker_pool(settings: Settings) -> ArqRedis:
    """The Redis client of a worker process, shared by its arq workers and runtime.

    arq's `create_pool` sets no read timeout: a Redis that stops answering
    without closing the connection (a network partition) would hold every
    call for as long as TCP takes to give up, many minutes. Ours time out
    after `CALL_TIMEOUT_S`, an outage like any other (`worker.outage`).
    """
    if settings.redis_url is None:
        raise RuntimeError("resolve the Redis URL (embedded or configured) before building workers")
    connections = ConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=CALL_TIMEOUT_S,
        socket_connect_timeout=CALL_TIMEOUT_S,
    )
    return ArqRedis(connections, job_serializer=serialize_job, job_deserializer=deserialize_job)


def _worker(
    settings: Settings, provider: Provider, pool: ArqRedis, runtime: Runtime, *, burst: bool
) -> BatchStartWorker:
    # Its in-progress timeout comes from the runtime's settings (`BatchStartWorker.main`).
    return BatchStartWorker(
        **worker_options(settings, provider),
        redis_pool=pool,
        burst=burst,
        handle_signals=False,
        ctx={"runtime": runtime},
        refusals=runtime.refusals,
        provider=provider,
        burst_stop=partial(stalled_by, runtime.limiters[provider]),
    )


async def _drain(worker: BatchStartWorker) -> Stalled | None:
    # The signal handler cancels the main task once in-flight jobs ended.
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await worker.async_run()
    except BurstStopped as stop:
        settings = worker.ctx["runtime"].settings.provider(worker.provider)
        waiting = int(await worker.pool.zcard(worker.queue_name))
        unreachable = worker.ctx["runtime"].limiters[worker.provider].reachability.gave_up()
        return Stalled(worker.provider, settings.account, stop.why, waiting, unreachable)
    return None


def _install_signal_handlers(
    workers: Sequence[Worker], on_signal: Callable[[], None] | None
) -> None:
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        log.info("%s: finishing in-flight jobs, taking no new ones", sig.name)
        for w in workers:
            w.handle_sig_wait_for_completion(sig)
        if on_signal is not None:
            on_signal()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)


# --- `arq worker.app.WorkerSettings` ---------------------------------------


class ArqContext(TypedDict, total=False):
    """arq's `ctx` in a process run by arq's own CLI, as far as we use it."""

    settings: Settings
    """Ours (`WorkerSettings.ctx`)."""
    provider: Provider
    """Ours: the queue this process drains."""
    redis: ArqRedis
    """arq's pool, set before start-up."""
    runtime: Runtime
    """Set at start-up; what every job runs with (`worker.runner.JobContext`)."""


async def _arq_startup(ctx: ArqContext) -> None:
    settings = ctx["settings"]
    protect(settings)
    setup_sentry(settings.sentry_dsn)
    ctx["runtime"] = await Runtime.start(settings, ctx["redis"], [ctx["provider"]])


async def _arq_shutdown(ctx: ArqContext) -> None:
    runtime = ctx.get("runtime")
    if runtime is not None:
        await runtime.close()


def arq_settings_class(provider: Provider, settings: Settings | None = None) -> type:
    """A `WorkerSettings` class as arq's CLI expects, for one provider queue.

    arq's CLI builds `arq.worker.Worker` by name (`arq.worker.create_worker`)
    and offers no way to pick another class; a process that asks for ours
    gets `PollLoop` instead: arq's own worker, whose poll loop outlives a
    Redis restart where arq's exits, and takes only jobs surely on disk
    (`worker.arq_loop`). The batching and the refusal of poison-pill jobs
    (`BatchStartWorker`) are `invoicer worker`'s.
    """
    import arq.worker

    arq.worker.Worker = PollLoop  # type: ignore[misc]
    settings, _ = with_redis(settings or load_settings())
    options = worker_options(settings, provider)
    options.pop("job_completion_wait")  # arq's CLI installs its own handlers
    attrs: dict[str, Any] = {
        **options,
        "redis_settings": redis_settings(settings),
        "on_startup": _arq_startup,
        "on_shutdown": _arq_shutdown,
        "ctx": ArqContext(settings=settings, provider=provider),
        "job_completion_wait": settings.shutdown_wait_s,
    }
    return type(f"{provider.value.title()}WorkerSettings", (), attrs)


def __getattr__(name: str) -> type:
    # Built on first access so importing this module reads no environment.
    if name == "MaastWorkerSettings":
        return arq_settings_class(Provider.MAAST)
    if name == "StaxWorkerSettings":
        return arq_settings_class(Provider.STAX)
    if name == "WorkerSettings":
        settings = load_settings()
        return arq_settings_class(settings.arq_provider, settings)
    raise AttributeError(name)
