"""A job still running when arq's timeout comes keeps its record's job.

arq's job timeout is final: it deletes the job. Our runner, cancelled by it,
gives the record back first, while the job still exists, so the record would
be left `sending` with no job and no lease: waiting for ever. The job
function times itself out first and asks arq for a retry
(`worker.outage.retried_after_outage`). Real Redis, arq's own `run_job`
(through `PollLoop`), a provider whose create never answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis
from arq.worker import func

from jobs.models import Invoice, InvoiceReceipt, Provider
from tests.fakes import FakeProvider
from tests.worker.test_runner import KEY, Rig, build_rig, make_invoice
from worker.arq_job import JOB_FUNCTION, MAX_TRIES, deserialize_job, serialize_job
from worker.arq_loop import PollLoop
from worker.keys import ARQ_JOB
from worker.outage import retried_after_outage
from worker.runner import create_invoice_job

ARQ_TIMEOUT_S = 1.5


class Silent(FakeProvider):
    """A provider whose create never answers (a request stuck, a partition)."""

    async def create(self, invoice: Invoice, *, send_now: bool = False) -> InvoiceReceipt:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


@pytest.fixture
async def rig(redis_client: aioredis.Redis) -> AsyncIterator[Rig]:
    rig = build_rig(redis_client, Provider.MAAST)
    rig.provider = Silent(Provider.MAAST)
    rig.runtime.providers[Provider.MAAST] = rig.provider
    yield rig


async def run_once(rig: Rig, redis_url: str, job: Callable[..., Awaitable[Any]]) -> None:
    """One pick-up of the queue's job by arq's own `run_job` (a burst of one)."""
    pool = ArqRedis.from_url(redis_url)
    worker = PollLoop(
        functions=[
            func(cast(Any, job), name=JOB_FUNCTION, timeout=ARQ_TIMEOUT_S, max_tries=MAX_TRIES)
        ],
        queue_name=rig.runtime.keys.queue(Provider.MAAST),
        redis_pool=pool,
        burst=True,
        max_burst_jobs=1,
        poll_delay=0.01,
        keep_result=0,
        handle_signals=False,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
        ctx={"runtime": rig.runtime},
    )
    try:
        await asyncio.wait_for(worker.main(), timeout=30)
    finally:
        await pool.aclose()


async def job_left(rig: Rig) -> bool:
    record = await rig.record(KEY)
    redis = rig.runtime.redis
    queued = await redis.zscore(rig.runtime.keys.queue(Provider.MAAST), record.job_id)
    return queued is not None and bool(await redis.exists(ARQ_JOB + record.job_id))


async def test_a_job_at_arq_s_timeout_is_retried_and_its_record_keeps_its_job(
    rig: Rig, redis_url: str
) -> None:
    await rig.enqueue(make_invoice())
    # When the create hangs past our own timeout (below arq's),
    job = retried_after_outage(create_invoice_job, timeout_s=ARQ_TIMEOUT_S - 1.0)
    await run_once(rig, redis_url, job)
    # Then the job is still queued (arq retries it), and the record, its
    # create maybe on its way, is looked up by that retry.
    assert await job_left(rig)
    assert (await rig.record(KEY)).state.value == "sending"
    assert not rig.runtime.holding


async def test_without_it_arq_s_timeout_would_strand_the_record(rig: Rig, redis_url: str) -> None:
    # Why the job times itself out: arq's own timeout deletes the job.
    await rig.enqueue(make_invoice())
    await run_once(rig, redis_url, create_invoice_job)
    assert not await job_left(rig)
