"""arq's `Worker` with a poll loop that outlives Redis and takes only settled jobs.

arq's own `main` ends at the first Redis call of a poll that fails (and with
it the worker process): a Redis restart of a second stops every worker. Here
a failed poll is reported to the process's `worker.outage.Outage` (one log
line per outage), waited out with backoff and tried again, while the jobs in
flight carry on. The same goes for arq's own steps around each job
(`run_job`). `BatchStartWorker` (worker/arq_worker.py) builds on this.

Under a Redis that may lose the last second or two of acknowledged writes
(`appendfsync everysec`, a replica: `worker.durability`), a job is taken only
once it has been due for `SETTLE_S`: its record, and its enqueue, are then on
disk before any request for it can leave, so a crash cannot forget an
invoice that was already sent (the recovery of `worker.epoch` covers the
marks written after that). It costs each invoice two seconds of latency,
nothing in throughput.

Relies on arq 0.28's `main` and `_poll_iteration` (their steps are repeated
here): re-check them on any arq upgrade.
"""

from __future__ import annotations

import asyncio

from arq.connections import create_pool, log_redis_info
from arq.utils import poll, timestamp_ms
from arq.worker import Worker
from arq.worker import logger as arq_logger
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError

from worker.durability import SETTLE_S, Policy
from worker.epoch import Epoch
from worker.outage import OUTAGE_ERRORS, Outage
from worker.runtime import in_progress_s


class PollLoop(Worker):
    """arq's `Worker`, whose poll loop waits out Redis outages (see the module)."""

    _outage: Outage | None = None

    @property
    def outage(self) -> Outage:
        """The process's `Outage` (the runtime's, once started), shared by every queue."""
        shared = getattr(self.ctx.get("runtime"), "outage", None)
        if isinstance(shared, Outage):
            return shared
        if self._outage is None:
            self._outage = Outage()
        return self._outage

    async def main(self) -> None:
        """arq's `main`, with a poll loop that waits out a Redis outage.

        arq's own ends at the first failed Redis call of a poll (and with it
        the process); here a poll that fails for an outage is reported once
        (`worker.outage`), waited out with backoff and tried again, and the
        jobs in flight carry on meanwhile.
        """
        if self._pool is None:  # arq's CLI: the pool is ours to make
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        arq_logger.info(
            "Starting worker for %d functions: %s", len(self.functions), ", ".join(self.functions)
        )
        try:
            await log_redis_info(self.pool, arq_logger.info)
        except OUTAGE_ERRORS as error:
            self.outage.failed(error)  # only a log line: the loop below waits
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        runtime = self.ctx.get("runtime")
        if runtime is not None:
            # arq derives this from the job timeout (minutes) and never renews
            # it; ours is short and renewed by the runtime's heartbeat, so the
            # jobs of a dead worker, or of a Redis outage, come back in seconds.
            self.in_progress_timeout_s = in_progress_s(runtime.settings)
        async for _ in poll(self.poll_delay_s):
            try:
                done = await self._poll_once()
            except OUTAGE_ERRORS as error:
                await self.outage.wait(error)
                continue
            self.outage.ok()
            if done:
                return

    async def _poll_once(self) -> bool:
        """One turn of arq's loop; True when a burst worker is done."""
        await self._poll_iteration()
        if not self.burst:
            return False
        if 0 <= self.max_burst_jobs <= self._jobs_started():
            await asyncio.gather(*self.tasks.values())
            return True
        if await self.pool.zcard(self.queue_name) == 0:
            await asyncio.gather(*self.tasks.values())
            return True
        return False

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's, giving back the slot it took for the job Redis failed under.

        arq takes a slot (semaphore and counter) per job before its
        check-and-set round trips and never gives it back if one fails: a
        few outages would leave the worker without slots.
        """
        try:
            await super().start_jobs(job_ids)
        except OUTAGE_ERRORS:
            self.job_counter -= 1
            self.sem.release()
            raise
        except WatchError as error:
            # arq handles a WatchError from its EXEC; one from its reads
            # under WATCH is redis-py's word for a connection lost meanwhile.
            self.job_counter -= 1
            self.sem.release()
            raise RedisConnectionError(str(error)) from error

    async def run_job(self, job_id: str, score: int) -> None:
        """arq's `run_job`; a Redis outage in arq's own steps ends it quietly.

        arq reads the job and counts the try before the job function runs,
        and writes its end after: when Redis is away for either, the job
        simply stays in the queue (its in-progress key expires, see
        `worker.runtime.in_progress_s`) and runs again; the ledger, not arq,
        says what that run must do. Outages inside the job function are
        arq retries already (`worker.outage.retried_after_outage`).
        """
        try:
            await super().run_job(job_id, score)
        except OUTAGE_ERRORS as error:
            self.outage.failed(error)

    def settle_ms(self) -> int:
        """How long a job must have been due before it is taken (see the module)."""
        durability = Epoch.of(self.pool).durability
        if durability is None:
            return 0
        lossy = durability.policy in (Policy.EVERYSEC, Policy.UNKNOWN) or durability.replicas > 0
        return int(SETTLE_S * 1000) if lossy else 0

    def due_before_ms(self) -> int:
        """Jobs scored up to this (ms) may be taken now."""
        return timestamp_ms() - self.settle_ms()

    async def _poll_iteration(self) -> None:
        """arq's, reading the jobs due `settle_ms` ago rather than now."""
        count = self.queue_read_limit
        if self.burst and self.max_burst_jobs >= 0:
            burst_jobs_remaining = self.max_burst_jobs - self._jobs_started()
            if burst_jobs_remaining < 1:
                return
            count = min(burst_jobs_remaining, count)
        if self.allow_pick_jobs and self.job_counter < self.max_jobs:
            job_ids = await self.pool.zrangebyscore(
                self.queue_name,
                min=float("-inf"),
                start=self._queue_read_offset,
                num=count,
                max=self.due_before_ms(),
            )
            await self.start_jobs(job_ids)
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        for job_id, t in list(self.tasks.items()):
            if t.done():
                del self.tasks[job_id]
                t.result()  # as arq: an error of run_job is not swallowed
        await self.heart_beat()
