"""`arq worker.app.WorkerSettings`: the way in for arq users, through arq's own CLI.

Real `arq` processes against real Redis and the sandbox: the default class
drains the Maast queue, `StaxWorkerSettings` the Stax one, and jobs are JSON
in Redis (never pickle), both as enqueued and as the worker reads them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
import redis.asyncio as aioredis

from jobs.models import Provider
from sandbox.client import SandboxClient
from tests.worker.support import ROOT, enqueue, invoice, worker_env
from worker.arq_job import JOB_FUNCTION
from worker.keys import ARQ_JOB, Keys, invoice_key
from worker.ledger import Ledger, State

pytestmark = pytest.mark.slow
KEYS = Keys()


async def run_arq(env: dict[str, str], settings_class: str) -> None:
    """`python -m arq worker.app.<settings_class> --burst`; fails the test unless it exits 0."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "arq", f"worker.app.{settings_class}", "--burst"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]


async def states(redis: aioredis.Redis, provider: Provider, numbers: list[str]) -> set[State]:
    keys = [invoice_key(provider, "default", n) for n in numbers]
    records = await Ledger(redis, KEYS).get_many(keys)
    assert all(r is not None for r in records)
    return {r.state for r in records if r is not None}


async def test_worker_settings_drain_the_maast_queue_only(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    env = worker_env(redis_url, sandbox_url)
    maast = [f"ARQ-M-{i:03d}" for i in range(15)]
    stax = [f"ARQ-S-{i:03d}" for i in range(3)]
    await enqueue(env, [invoice(n) for n in maast], Provider.MAAST)
    await enqueue(env, [invoice(n) for n in stax], Provider.STAX)

    await run_arq(env, "WorkerSettings")

    assert await sandbox.created_counts("maast") == {n: 1 for n in maast}
    assert await states(redis_client, Provider.MAAST, maast) == {State.CREATED}
    assert await redis_client.zcard(KEYS.queue(Provider.MAAST)) == 0
    # The Stax queue is not this class's business.
    assert await sandbox.created_counts("stax") == {}
    assert await states(redis_client, Provider.STAX, stax) == {State.QUEUED}


async def test_stax_worker_settings_select_the_stax_queue(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    env = worker_env(redis_url, sandbox_url, STAX_RATE_PER_MINUTE="6000")
    maast = [f"ARQ-M-{i:03d}" for i in range(3)]
    stax = [f"ARQ-S-{i:03d}" for i in range(8)]
    await enqueue(env, [invoice(n) for n in maast], Provider.MAAST)
    await enqueue(env, [invoice(n) for n in stax], Provider.STAX)

    await run_arq(env, "StaxWorkerSettings")

    assert await sandbox.created_counts("stax") == {n: 1 for n in stax}
    assert await states(redis_client, Provider.STAX, stax) == {State.CREATED}
    assert await sandbox.created_counts("maast") == {}
    assert await redis_client.zcard(KEYS.queue(Provider.MAAST)) == 3


async def test_jobs_are_json_in_redis_and_the_settings_say_so(
    redis_url: str, redis_client: aioredis.Redis, sandbox_url: str
) -> None:
    env = worker_env(redis_url, sandbox_url)
    await enqueue(env, [invoice("ARQ-JSON-1")], Provider.MAAST)

    record = await Ledger(redis_client, KEYS).get(
        invoice_key(Provider.MAAST, "default", "ARQ-JSON-1")
    )
    assert record is not None
    raw = await redis_client.get(ARQ_JOB + record.job_id)
    assert raw is not None
    job = json.loads(raw)  # pickle would not parse
    assert job["f"] == JOB_FUNCTION
    assert job["a"] == [record.invoice_key]

    # And the class arq's CLI loads reads and writes JSON too.
    probe = (
        "import json, worker.app as a; s = a.WorkerSettings; "
        "print(json.dumps([s.job_serializer is a.serialize_job, "
        "s.job_deserializer is a.deserialize_job, s.queue_name]))"
    )
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == [True, True, KEYS.queue(Provider.MAAST)]
