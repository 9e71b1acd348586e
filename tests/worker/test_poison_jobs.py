"""Poison-pill jobs: whatever sits in a queue, a real `invoicer worker` keeps
running and keeps creating good invoices (real process, real Redis, the sandbox).

Before, a job with `"et": "yesterday"`, `"t": "1"`, a hash where the job
should be or a retry counter that is not a number made arq's `run_job` raise
and the worker exit; the job stayed queued and killed the next worker too.
The poison here is fuzzed from a fixed seed (plus every case the issue
names), planted before the worker starts and again while it runs.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from jobs.models import Provider
from sandbox.client import SandboxClient
from tests.worker.support import enqueue, invoice, start_worker, wait_all, worker_env
from worker.arq_job import JOB_FUNCTION
from worker.cli import app
from worker.dlq import DeadLetters
from worker.keys import ARQ_JOB, ARQ_RETRY, Keys, invoice_key
from worker.ledger import Ledger, State
from worker.refused import refused_jobs

pytestmark = pytest.mark.slow
KEYS = Keys()
QUEUE = KEYS.queue(Provider.MAAST)
Plant = Callable[[aioredis.Redis], Awaitable[None]]
Poison = list[tuple[bytes, bytes | None, Plant | None]]
"""(job id, its body or None, a planting step of its own or None) per poison job."""


def job(number: str, **changes: object) -> bytes:
    data: dict[str, object] = {"t": 1, "f": JOB_FUNCTION, "a": [f"maast:{number}"], "k": {}}
    data["et"] = int(time.time() * 1000)
    data.update(changes)
    return json.dumps(data).encode()


def named_poison() -> Poison:
    """Each case issue 8 names."""

    def jid(n: str) -> bytes:
        return f"{KEYS.prefix}maast:{n}#1".encode()

    async def hash_job(r: aioredis.Redis) -> None:
        await r.hset(ARQ_JOB + "invoicer:maast:P-HASH#1", mapping={"f": JOB_FUNCTION})  # type: ignore[misc]

    async def bad_retry(r: aioredis.Redis) -> None:
        await r.set(ARQ_RETRY + "invoicer:maast:P-RETRY#1", "many")

    return [
        (jid("P-ET-TEXT"), job("P-ET-TEXT", et="yesterday"), None),
        (jid("P-T-TEXT"), job("P-T-TEXT", t="1"), None),
        (jid("P-ET-HUGE"), job("P-ET-HUGE", et=1e300), None),
        (jid("P-F-LIST"), job("P-F-LIST", f=["create_invoice_job"]), None),
        (jid("P-NOT-JSON"), b"{not json", None),
        (jid("P-HASH"), None, hash_job),
        (jid("P-RETRY"), job("P-RETRY"), bad_retry),
        (b"0f1e2d3c4b5a", job("P-FOREIGN"), None),  # a job id that is not ours
        (jid("P-HUGE"), job("P-HUGE", a=["maast:P-HUGE" + "x" * 50_000]), None),
        (jid("P-UNKNOWN"), job("P-UNKNOWN"), None),  # well formed, no such invoice
        (b"invoicer:maast:\xff\xfe#1", job("P-BYTES"), None),
        (jid("P-MISSING"), None, None),  # in the queue, no job body
    ]


def fuzzed_poison(rng: random.Random, count: int) -> Poison:
    """Jobs with one field swapped for a random value, random bytes, odd Redis types."""
    values: list[object] = [None, True, -1, 2**70, 1.5, "", "x" * 300, [], {}, [[1]], {"a": 1}]
    made: Poison = []
    for i in range(count):
        number = f"FZ-{i:03d}"
        job_id = f"{KEYS.prefix}maast:{number}#1".encode()
        kind = rng.choice(["field", "bytes", "type", "retry"])
        if kind == "field":
            # A value that passes (or a new field) leaves a job for an unknown invoice.
            made.append((job_id, job(number, **{rng.choice("tfake"): rng.choice(values)}), None))
        elif kind == "bytes":
            made.append((job_id, rng.randbytes(rng.randint(0, 64)), None))
        else:
            made.append((job_id, job(number), _odd_key(kind, job_id, rng)))
    return made


def _odd_key(kind: str, job_id: bytes, rng: random.Random) -> Plant:
    key = (ARQ_JOB if kind == "type" else ARQ_RETRY).encode() + job_id

    async def plant(r: aioredis.Redis) -> None:
        await r.delete(key)
        choice = rng.choice(["list", "set", "zset", "hash", "text", "big", "negative"])
        if choice == "list":
            await r.rpush(key, "a")  # type: ignore[misc, arg-type]
        elif choice == "set":
            await r.sadd(key, "a")  # type: ignore[misc, arg-type]
        elif choice == "zset":
            await r.zadd(key, {"a": 1})
        elif choice == "hash":
            await r.hset(key, "a", "b")  # type: ignore[misc, arg-type]
        else:
            await r.set(key, {"text": "abc", "big": "9" * 30, "negative": "-3"}[choice])

    return plant


async def plant(
    redis: aioredis.Redis, poison: list[tuple[bytes, bytes | None, Plant | None]]
) -> None:
    for job_id, body, extra in poison:
        if body is not None:
            await redis.set(ARQ_JOB.encode() + job_id, body)
        if extra is not None:
            await extra(redis)
        await redis.zadd(QUEUE, {job_id: 1})


async def wait_created(redis: aioredis.Redis, numbers: list[str], timeout_s: float = 60) -> None:
    ledger = Ledger(redis, KEYS)
    keys = [invoice_key(Provider.MAAST, "default", n) for n in numbers]
    deadline = time.monotonic() + timeout_s
    while True:
        records = await ledger.get_many(keys)
        if all(r is not None and r.state is State.CREATED for r in records):
            return
        assert time.monotonic() < deadline, [(r.invoice_key, r.state) for r in records if r]
        await asyncio.sleep(0.1)


async def wait_empty(redis: aioredis.Redis, timeout_s: float = 20) -> None:
    for _ in range(int(timeout_s * 10)):
        if not await redis.zcard(QUEUE):
            return
        await asyncio.sleep(0.1)


async def test_no_job_content_stops_a_worker_and_good_invoices_keep_coming(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    env = worker_env(redis_url, sandbox_url)
    rng = random.Random(20261201)
    first = [f"GOOD-{i:03d}" for i in range(10)]
    then = [f"LATER-{i:03d}" for i in range(10)]
    await enqueue(env, [invoice(n) for n in [*first, "VICTIM"]], Provider.MAAST)
    # One real invoice's own job is overwritten with poison.
    victim_job = (await Ledger(redis_client, KEYS).get("maast:VICTIM")).job_id  # type: ignore[union-attr]
    await redis_client.set(ARQ_JOB + victim_job, job("VICTIM", t="1"))
    wave_1 = named_poison() + fuzzed_poison(rng, 30)
    await plant(redis_client, wave_1)

    # A worker starts on a queue full of poison,
    worker = start_worker(env, "--providers", "maast")
    try:
        await wait_created(redis_client, first)
        # keeps running while more poison and more invoices arrive,
        wave_2 = [(i + b"-2", b, p) for i, b, p in fuzzed_poison(rng, 30)]
        await plant(redis_client, wave_2)
        await enqueue(env, [invoice(n) for n in then], Provider.MAAST)
        await wait_created(redis_client, then)
        assert worker.poll() is None, "the worker exited"
        await wait_empty(redis_client)
    finally:
        stderr = await stop(worker)

    # and refused every poison job, each with one line saying why, leaving none queued.
    assert await redis_client.zcard(QUEUE) == 0
    planted = len(wave_1) + len(wave_2) + 1
    refused = await refused_jobs(redis_client, KEYS, limit=1000)
    assert len(refused) == planted, [r.reason for r in refused]
    assert stderr.count("refused job ") == planted, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    reasons = {r.invoice_key: r.reason for r in refused}
    assert "no ledger record" in reasons["maast:P-UNKNOWN"]
    assert "over the limit" in reasons["maast:P-HUGE"]
    assert "Redis hash" in reasons["maast:P-HASH"]
    assert "retry counter" in reasons["maast:P-RETRY"]
    # The invoice whose own job was poisoned is parked, not stranded, and a requeue creates it.
    entry = await DeadLetters(redis_client, KEYS).get("maast:VICTIM")
    assert entry is not None and entry.reason == "refused_job" and "try count" in entry.message
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["dlq", "requeue", "maast:VICTIM"], env=env
    )
    assert result.exit_code == 0, result.output
    await asyncio.to_thread(wait_all, [start_worker(env, "--providers", "maast", "--burst")], 60)
    await wait_created(redis_client, ["VICTIM"], timeout_s=5)
    assert await sandbox.created_counts("maast") == {n: 1 for n in [*first, *then, "VICTIM"]}


async def stop(worker: subprocess.Popen[bytes]) -> str:
    worker.send_signal(signal.SIGTERM)
    _, err = await asyncio.to_thread(worker.communicate, timeout=30)
    assert worker.returncode == 0, err.decode()[-3000:]
    return err.decode()
