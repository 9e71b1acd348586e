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
import json
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import abort_jobs_ss
from arq.utils import timestamp_ms, to_ms
from arq.worker import Worker, func
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from jobs.models import Provider
from worker.embedded import with_redis
from worker.keys import ARQ_IN_PROGRESS, ARQ_JOB, ARQ_RESULT, ARQ_RETRY, Keys
from worker.runner import ARQ_MAX_TRIES, JOB_FUNCTION, create_invoice_job
from worker.runtime import Runtime, in_progress_s
from worker.settings import Settings, load_settings

log = logging.getLogger("invoicer.worker")


def serialize_job(data: dict[str, Any]) -> bytes:
    """arq job serializer: JSON, so writing to Redis never means running code."""
    return json.dumps(data, separators=(",", ":")).encode()


def deserialize_job(raw: bytes) -> dict[str, Any]:
    """arq job deserializer (JSON)."""
    value = json.loads(raw)
    assert isinstance(value, dict)
    return value


def job_timeout_s(settings: Settings) -> float:
    """Upper bound of one job: lookup, create and send, each with a limiter wait."""
    worst = max(s.connect_timeout_s + s.read_timeout_s for s in (settings.maast, settings.stax))
    return 3 * (worst + 10.0) + 5.0


def worker_options(settings: Settings, provider: Provider) -> dict[str, Any]:
    """Keyword arguments of arq's `Worker` for one provider queue."""
    return {
        "functions": [
            func(
                create_invoice_job,
                name=JOB_FUNCTION,
                max_tries=ARQ_MAX_TRIES,
                timeout=job_timeout_s(settings),
            )
        ],
        "queue_name": Keys(settings.redis_prefix).queue(provider),
        "max_jobs": settings.concurrency,
        "poll_delay": settings.poll_delay_s,
        "job_timeout": job_timeout_s(settings),
        "keep_result": 0,
        "max_tries": ARQ_MAX_TRIES,
        "job_completion_wait": settings.shutdown_wait_s,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
        "health_check_interval": 10,
        "health_check_key": f"{Keys(settings.redis_prefix).prefix}health:{provider.value}",
    }


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings from our Redis URL (embedded Redis resolved by the caller)."""
    if settings.redis_url is None:
        raise RuntimeError("resolve the Redis URL (embedded or configured) before building workers")
    return RedisSettings.from_dsn(settings.redis_url.get_secret_value())


async def run_workers(
    settings: Settings, providers: Sequence[Provider], *, burst: bool = False
) -> None:
    """Drain the queues of `providers` in this process until stopped (or empty, with `burst`)."""
    pool = await create_pool(
        redis_settings(settings), job_serializer=serialize_job, job_deserializer=deserialize_job
    )
    runtime = await Runtime.start(settings, pool, list(providers))
    workers = [_worker(settings, p, pool, runtime, burst=burst) for p in providers]
    _install_signal_handlers(workers)
    try:
        await asyncio.gather(*(_drain(w) for w in workers))
    finally:
        for w in workers:
            await asyncio.gather(*w.tasks.values(), return_exceptions=True)
        await runtime.close()
        await pool.aclose()


# KEYS: none. ARGV: 1 queue, 2 in-progress key prefix, 3 now (ms), 4 in-progress
# TTL (ms), 5.. job ids. arq's own check-and-set per id (`Worker.start_jobs`),
# atomic here instead of WATCH/MULTI. Returns {job id, score} per job taken.
_START_JOBS_LUA = """
local taken = {}
for i = 5, #ARGV do
  local in_progress = ARGV[2] .. ARGV[i]
  if redis.call('EXISTS', in_progress) == 0 then
    local score = redis.call('ZSCORE', ARGV[1], ARGV[i])
    if score and tonumber(score) <= tonumber(ARGV[3]) then
      redis.call('PSETEX', in_progress, ARGV[4], '1')
      taken[#taken + 1] = {ARGV[i], score}
    end
  end
end
return taken
"""


FINISH_WINDOW_S = 0.002
"""How long a finished job's writes wait for other jobs' to share a round trip."""


class BatchStartWorker(Worker):
    """arq's `Worker`, taking the jobs of a poll with one script call.

    arq takes each job with WATCH, EXISTS, ZSCORE and MULTI/PSETEX/EXEC:
    four round trips per job, one job after the other, which is most of its
    own cost per job. This does the same check-and-set (in-progress key
    absent, job still queued and due; then the in-progress key with arq's
    TTL) for every job that has a free slot, atomically in one Lua call.
    Likewise, the writes that end a job (`finish_job`: arq's own commands)
    go out with those of other jobs ending at the same time. Everything else
    (slots, run, retry, results) is arq's own code.
    """

    _start_script: AsyncScript | None = None
    _finishing: list[tuple[Callable[[Pipeline], None], asyncio.Future[None]]] | None = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Start the jobs `job_ids` names, as many at a time as slots are free."""
        # The ids of jobs running here come back at every poll (arq leaves a
        # job in the queue until it ends): skip them without asking Redis.
        pending = [j for j in map(bytes.decode, job_ids) if self._not_running(j)]
        # Checked again after each wait for a slot: a SIGTERM meanwhile means
        # "take no new job", and a job taken now would be cut off mid-request.
        while pending and self.allow_pick_jobs:
            slots = await self._free_slots(len(pending))
            if not slots:
                return
            batch, pending = pending[:slots], pending[slots:]
            self.job_counter += slots
            taken = await self._take(batch)
            for job_id in batch:
                if job_id not in taken:
                    self.job_counter -= 1
                    self.sem.release()
                    continue
                task = self.loop.create_task(self.run_job(job_id, taken[job_id]))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task

    def _not_running(self, job_id: str) -> bool:
        task = self.tasks.get(job_id)
        return task is None or task.done()

    async def _free_slots(self, wanted: int) -> int:
        # Like arq: wait for one slot, then take every other free one at once.
        await self.sem.acquire()
        if self.job_counter >= self.max_jobs:
            self.sem.release()
            return 0
        slots = 1
        while slots < wanted and self.job_counter + slots < self.max_jobs and not self.sem.locked():
            await self.sem.acquire()
            slots += 1
        return slots

    async def _take(self, job_ids: list[str]) -> dict[str, int]:
        ttl_ms = int(self.in_progress_timeout_s * 1000)
        args: list[str | int] = [self.queue_name, ARQ_IN_PROGRESS, timestamp_ms(), ttl_ms]
        if self._start_script is None:
            self._start_script = self.pool.register_script(_START_JOBS_LUA)
        reply = await self._start_script(args=[*args, *job_ids])
        return {_text(job_id): int(float(score)) for job_id, score in reply}

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """arq's own end-of-job writes, in one transaction with those of the
        other jobs that end within `FINISH_WINDOW_S` (one round trip, not one
        per job). Returns once they are written, as arq's does."""

        def commands(tr: Pipeline) -> None:
            in_progress_key = ARQ_IN_PROGRESS + job_id
            delete_keys = []
            if keep_in_progress is None:
                delete_keys.append(in_progress_key)
            else:
                tr.pexpire(in_progress_key, to_ms(keep_in_progress))
            if finish:
                if result_data:
                    expire = None if keep_result_forever else result_timeout_s
                    tr.set(ARQ_RESULT + job_id, result_data, px=to_ms(expire))
                delete_keys += [ARQ_RETRY + job_id, ARQ_JOB + job_id]
                tr.zrem(abort_jobs_ss, job_id)
                tr.zrem(self.queue_name, job_id)
            elif incr_score:
                tr.zincrby(self.queue_name, incr_score, job_id)
            if delete_keys:
                tr.delete(*delete_keys)

        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if self._finishing is None:
            self._finishing = []
        self._finishing.append((commands, done))
        if len(self._finishing) == 1:
            loop.call_later(FINISH_WINDOW_S, self._flush_finished)
        await done

    def _flush_finished(self) -> None:
        batch, self._finishing = self._finishing or [], []
        task = asyncio.ensure_future(self._write_finished(batch))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _write_finished(
        self, batch: list[tuple[Callable[[Pipeline], None], asyncio.Future[None]]]
    ) -> None:
        try:
            async with self.pool.pipeline(transaction=True) as tr:
                for commands, _ in batch:
                    commands(tr)
                await tr.execute()
        except BaseException as error:
            for _, done in batch:
                if done.done():
                    continue
                if isinstance(error, Exception):
                    done.set_exception(error)
                else:
                    done.cancel()
            raise
        for _, done in batch:
            if not done.done():
                done.set_result(None)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _worker(
    settings: Settings, provider: Provider, pool: ArqRedis, runtime: Runtime, *, burst: bool
) -> Worker:
    worker = BatchStartWorker(
        **worker_options(settings, provider),
        redis_pool=pool,
        burst=burst,
        handle_signals=False,
        ctx={"runtime": runtime},
    )
    # arq derives this from the job timeout (minutes) and never renews it;
    # ours is short and renewed by the runtime's heartbeat (worker/runtime.py).
    worker.in_progress_timeout_s = in_progress_s(settings)
    return worker


async def _drain(worker: Worker) -> None:
    # The signal handler cancels the main task once in-flight jobs ended.
    with contextlib.suppress(asyncio.CancelledError):
        await worker.async_run()


def _install_signal_handlers(workers: list[Worker]) -> None:
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        log.info("%s: finishing in-flight jobs, taking no new ones", sig.name)
        for w in workers:
            w.handle_sig_wait_for_completion(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)


# --- `arq worker.app.WorkerSettings` ---------------------------------------


async def _arq_startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["runtime"] = await Runtime.start(settings, ctx["redis"], [ctx["provider"]])


async def _arq_shutdown(ctx: dict[str, Any]) -> None:
    runtime: Runtime | None = ctx.get("runtime")
    if runtime is not None:
        await runtime.close()


def arq_settings_class(provider: Provider, settings: Settings | None = None) -> type:
    """A `WorkerSettings` class as arq's CLI expects, for one provider queue."""
    settings, _ = with_redis(settings or load_settings())
    options = worker_options(settings, provider)
    options.pop("job_completion_wait")  # arq's CLI installs its own handlers
    attrs: dict[str, Any] = {
        **options,
        "redis_settings": redis_settings(settings),
        "on_startup": _arq_startup,
        "on_shutdown": _arq_shutdown,
        "ctx": {"settings": settings, "provider": provider},
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
