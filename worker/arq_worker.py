"""`BatchStartWorker`: arq's `Worker` with fewer Redis round trips per job.

arq takes each job with WATCH, EXISTS, ZSCORE and MULTI/PSETEX/EXEC (four
round trips, one job after the other) and ends each with its own
transaction: at a thousand jobs a second that is most of a worker's CPU
(docs/benchmarks.md, `overhead`). This subclass keeps arq's semantics and
code for everything else (slots, run, retry, results) and only batches those
two steps. It relies on arq 0.28 internals (`sem`, `job_counter`, `tasks`,
`_release_sem_dec_counter_on_complete`, `finish_job`'s signature): re-check
them on any arq upgrade (the end-to-end, shutdown and kill tests in
tests/worker exercise them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from arq.utils import timestamp_ms, to_ms
from arq.worker import Worker
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from worker.keys import ARQ_ABORT, ARQ_IN_PROGRESS, ARQ_JOB, ARQ_RESULT, ARQ_RETRY
from worker.replies import text

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
        return {text(job_id): int(float(score)) for job_id, score in reply}

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
                tr.zrem(ARQ_ABORT, job_id)
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
