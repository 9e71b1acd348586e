"""`BatchStartWorker`: arq's `Worker` with fewer Redis round trips per job.

arq takes each job with WATCH, EXISTS, ZSCORE and MULTI/PSETEX/EXEC (four
round trips, one job after the other) and ends each with its own
transaction: at a thousand jobs a second that is most of a worker's CPU
(docs/benchmarks.md, `overhead`). This subclass keeps arq's semantics and
code for everything else (slots, run, retry, results) and only batches those
two steps. Its poll loop (`worker.arq_loop.PollLoop`) outlives Redis outages, which
arq's own does not, and takes only jobs whose record is surely on disk.
It relies on arq 0.28 internals (`sem`, `job_counter`, `tasks`,
`_release_sem_dec_counter_on_complete`, `finish_job`'s signature, `main`'s
steps): re-check them on any arq upgrade (the end-to-end, shutdown, kill and
Redis-restart tests in tests/worker exercise them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from arq.utils import to_ms
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobs.models import Provider
from worker.arq_job import MAX_TRIES
from worker.arq_loop import PollLoop
from worker.keys import ARQ_ABORT, ARQ_IN_PROGRESS, ARQ_JOB, ARQ_RESULT, ARQ_RETRY
from worker.observability import describe_bug
from worker.refused import MAX_JOB_BYTES, MAX_JOB_ID_BYTES, Refusals, problem_of, shown
from worker.replies import text

log = logging.getLogger("invoicer.worker")

# worker/lua/start_jobs.lua: what it checks and returns is in its header.
_START_JOBS_LUA = resources.files("worker.lua").joinpath("start_jobs.lua").read_text("utf-8")


@dataclass(frozen=True)
class _Taken:
    """A job the start script took (its in-progress key is ours now)."""

    raw_id: bytes
    score: int
    problem: str | None
    """Why it must be refused instead of run; `None`: arq may run it."""
    body: str = ""
    """What it held, for the refused-jobs entry."""


FINISH_WINDOW_S = 0.002
"""How long a finished job's writes wait for other jobs' to share a round trip."""


BURST_CHECK_S = 1.0
"""How often an idle `--burst` worker asks whether its queue can move at all."""


class BurstStopped(Exception):
    """A `--burst` worker stopped with jobs left: its queue cannot move (`why`)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _name(raw_id: bytes) -> str:
    """A job id as arq and our logs use it (any bytes Redis held, readable)."""
    return raw_id.decode(errors="backslashreplace")


class BatchStartWorker(PollLoop):
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

    def __init__(
        self,
        *args: Any,
        refusals: Refusals,
        provider: Provider,
        burst_stop: Callable[[], Awaitable[str | None]] | None = None,
        **kwargs: Any,
    ) -> None:
        """arq's `Worker` for `provider`'s queue; refused jobs go to `refusals`.

        Args:
            burst_stop: with `burst`, asked (about once a second, while no job
                of this worker runs) why its queue cannot move; a reason
                stops the burst early, as `BurstStopped`.
        """
        super().__init__(*args, **kwargs)
        self.refusals = refusals
        self.provider = provider
        self._burst_stop = burst_stop
        self._next_stop_check = 0.0

    async def _poll_iteration(self) -> None:
        """arq's poll; with `burst`, also stop when the queue cannot move (`worker.burst`)."""
        await super()._poll_iteration()
        if not self.burst or self._burst_stop is None:
            return
        now = time.monotonic()
        if now < self._next_stop_check or any(not t.done() for t in self.tasks.values()):
            return
        self._next_stop_check = now + BURST_CHECK_S
        why = await self._burst_stop()
        if why is not None:
            raise BurstStopped(why)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Start the jobs `job_ids` names, as many at a time as slots are free;
        refuse, instead of running, those arq could not run (`worker.refused`)."""
        # The ids of jobs running here come back at every poll (arq leaves a
        # job in the queue until it ends): skip them without asking Redis.
        pending = [j for j in job_ids if self._not_running(_name(j))]
        # Checked again after each wait for a slot: a SIGTERM meanwhile means
        # "take no new job", and a job taken now would be cut off mid-request.
        while pending and self.allow_pick_jobs:
            slots = await self._free_slots(len(pending))
            if not slots:
                return
            batch, pending = pending[:slots], pending[slots:]
            self.job_counter += slots
            try:
                taken = await self._take(batch)
            except BaseException:  # Redis away: give the slots back, the poll waits
                self.job_counter -= slots
                for _ in range(slots):
                    self.sem.release()
                raise
            for raw_id in batch:
                job = taken.get(raw_id)
                if job is None:
                    self.job_counter -= 1
                    self.sem.release()
                    continue
                job_id = _name(raw_id)
                step = self.run_job(job_id, job.score) if job.problem is None else self._refuse(job)
                task = self.loop.create_task(step)
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task

    def _not_running(self, job_id: str) -> bool:
        task = self.tasks.get(job_id)
        return task is None or task.done()

    async def run_job(self, job_id: str, score: int) -> None:
        """arq's `run_job`, except that nothing it raises stops the worker.

        The checks before it (`_take`) let through only jobs arq can run;
        should arq still fail on one (it changed between the check and arq's
        read), the job is refused. A Redis outage is `PollLoop.run_job`'s.
        """
        try:
            await super().run_job(job_id, score)
        except (RedisConnectionError, RedisTimeoutError):
            raise
        except Exception as bug:
            problem = f"arq could not run it ({describe_bug(bug)})"
            await self._refuse(_Taken(job_id.encode(), score, problem))

    async def _refuse(self, job: _Taken) -> None:
        # Runs as a job task: whatever happens, it must not raise into arq's
        # poll loop (which would stop the worker, the very thing refused).
        try:
            await self.refusals.refuse(self.queue_name, job.raw_id, job.problem or "", job.body)
        except (RedisConnectionError, RedisTimeoutError):
            raise
        except Exception as bug:
            log.error("could not refuse job %s: %s", shown(_name(job.raw_id)), describe_bug(bug))

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

    async def _take(self, job_ids: list[bytes]) -> dict[bytes, _Taken]:
        ttl_ms = int(self.in_progress_timeout_s * 1000)
        due = self.due_before_ms()  # `PollLoop`: only jobs surely on disk
        args: list[bytes | str | int] = [self.queue_name, ARQ_IN_PROGRESS, due, ttl_ms]
        args += [ARQ_JOB, ARQ_RETRY, MAX_JOB_BYTES, MAX_JOB_ID_BYTES, MAX_TRIES]
        if self._start_script is None:
            self._start_script = self.pool.register_script(_START_JOBS_LUA)
        reply = await self._start_script(args=[*args, *job_ids])
        taken = [self._checked(_raw(job_id), *rest) for job_id, *rest in reply]
        return {job.raw_id: job for job in taken}

    def _checked(
        self, raw_id: bytes, score: bytes | str, body: bytes | str, problem: bytes | str
    ) -> _Taken:
        """A taken job, with the problem that forbids running it (Redis's or its body's)."""
        content = _raw(body)
        found = text(problem) or problem_of(
            _name(raw_id), content, self.refusals.keys, self.provider
        )
        return _Taken(raw_id, int(float(score)), found or None, content.decode(errors="replace"))

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
