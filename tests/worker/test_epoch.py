"""`worker.epoch`: ledger scripts run only on the Redis instance their process
checked; a new instance (restart, crash, failover) is recovered from before any
claim runs on it.

Each test runs its own redis-server (tests/redis_server.py), restarted or
crashed as the test needs; never the session's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from jobs.models import Provider
from jobs.sources import Record
from tests.redis_server import RedisServer
from tests.worker.support import enqueue_records
from tests.worker.test_ledger import make_invoice
from worker.epoch import Epoch, NewServer, RecoveryParams
from worker.keys import Keys
from worker.ledger import Ledger
from worker.lua import Scripts, script_env

KEYS = Keys("e:")
WINDOW_MS = 60_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    s = RedisServer(tmp_path / "redis", appendfsync="everysec")
    s.start()
    yield s
    s.close()


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(server.url)
    yield c
    await c.aclose()


def worker_epoch(redis: aioredis.Redis, **params: Any) -> Epoch:
    epoch = Epoch.of(redis)
    epoch.configure(RecoveryParams(window_ms=WINDOW_MS, worker=True, **params))
    return epoch


async def enqueue(redis: aioredis.Redis, count: int, prefix: str = "INV") -> list[str]:
    records = [Record(line=i + 2, invoice=make_invoice(f"{prefix}-{i:03d}")) for i in range(count)]
    await enqueue_records(redis, KEYS, records, provider=Provider.MAAST)
    return [f"maast:{prefix}-{i:03d}" for i in range(count)]


async def record(redis: aioredis.Redis, invoice_key: str) -> dict[str, str]:
    raw = await cast(Any, redis.hgetall(KEYS.ledger(invoice_key)))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def claim(ledger: Ledger, invoice_key: str) -> Any:
    found = await ledger.get(invoice_key)
    assert found is not None
    return await ledger.claim(invoice_key, found.job_id, early_sending=True)


async def evalsha(client: aioredis.Redis, sha: str, env: str) -> Any:
    """A claim sent by hand, as a path that bypassed `worker.epoch` would."""
    args = [env, "", "maast:X", "job", "token", "1000"]
    return await cast(Any, client.evalsha(sha, 0, *args))


async def test_a_ledger_script_never_runs_unchecked(
    client: aioredis.Redis, server: RedisServer
) -> None:
    # A call that does not name the instance it checked (a path that bypasses
    # worker.epoch) is refused before the script does anything.
    scripts = Scripts.register(client)
    await client.script_load(scripts.claim.source)
    with pytest.raises(ResponseError, match=f"^EPOCH {server.run_id()}$"):
        await evalsha(client, scripts.claim.sha, script_env(KEYS))
    # nor one naming another instance.
    env = script_env(KEYS)[:-1] + ',"run_id":"0123abcd"}'
    with pytest.raises(ResponseError, match=r"^EPOCH [0-9a-f]{40}$"):
        await evalsha(client, scripts.claim.sha, env)


async def test_a_restart_is_noticed_by_the_next_call_and_recovered_from_once(
    client: aioredis.Redis, server: RedisServer
) -> None:
    epoch = worker_epoch(client)
    seen: list[NewServer] = []

    async def hook(found: NewServer) -> None:
        seen.append(found)

    epoch.on_new_server(hook)
    ledger = Ledger(client, KEYS, lease_s=5)
    keys = await enqueue(client, 40)
    held = await claim(ledger, keys[0])  # in flight when Redis goes
    assert held is not None
    first = epoch.run_id

    # When Redis restarts (a clean restart: under everysec we cannot tell it from a crash),
    await asyncio.to_thread(server.restart)
    # and the process's jobs carry on, fifty claims at once,
    claimed = await asyncio.gather(*(claim(ledger, k) for k in keys[1:]))

    # Then the process noticed the new instance once, before any claim ran on it,
    assert epoch.run_id != first and epoch.changes == 1
    assert len(seen) == 1 and seen[0].previous_run_id == first and seen[0].lossy
    # every record in flight, or at the head of the queue, was looked up first,
    assert all(c is not None and c.claim.create_maybe_landed for c in claimed)
    rec = await record(client, keys[0])
    assert (
        rec["lookup"] == "1"
        and int(rec["landing_until_ms"]) >= int(time.time() * 1000) + WINDOW_MS - 1000
    )
    history = await ledger.history(keys[0])
    assert history[-1]["event"] == "redis restarted"
    # and the recovery is on record, once.
    recoveries = [json.loads(e) for e in await cast(Any, client.lrange(KEYS.epochs(), 0, -1))]
    assert len(recoveries) == 1 and recoveries[0]["lossy"] and recoveries[0]["marked"] >= 40
    # The holder's lease survived (a clean restart), so it carries on.
    await held.release()


async def test_script_flush_is_only_a_reload(client: aioredis.Redis) -> None:
    epoch = worker_epoch(client)
    ledger = Ledger(client, KEYS, lease_s=5)
    keys = await enqueue(client, 2)
    await client.script_flush()
    held = await claim(ledger, keys[0])
    assert held is not None and not held.claim.create_maybe_landed
    assert epoch.changes == 0
    assert await cast(Any, client.llen(KEYS.epochs())) == 0


async def test_nothing_is_marked_after_an_instance_that_fsyncs_every_write(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", appendfsync="always")
    server.start()
    client = aioredis.Redis.from_url(server.url)
    try:
        epoch = worker_epoch(client)
        ledger = Ledger(client, KEYS, lease_s=5)
        keys = await enqueue(client, 5)
        await asyncio.to_thread(server.restart)
        held = await claim(ledger, keys[0])
        assert held is not None and not held.claim.create_maybe_landed
        assert epoch.changes == 1 and not epoch.seen[0].lossy and epoch.seen[0].marked == 0
    finally:
        await client.aclose()
        server.close()


async def test_the_head_of_each_queue_is_marked_as_far_as_the_workers_alive_could_claim(
    client: aioredis.Redis, server: RedisServer
) -> None:
    # Given one worker alive with 5 slots on the Maast queue (its heartbeat
    # record), and a recovery that adds 4 invoices per queue,
    now_ms = int(time.time() * 1000)
    beat = {"queues": ["maast"], "last_beat_ms": now_ms, "concurrency": 5, "stopped": False}
    await cast(Any, client.hset(KEYS.workers(), "host:1:ab", json.dumps(beat)))
    epoch = worker_epoch(client, head_extra=4)
    keys = await enqueue(client, 30)
    # When Redis comes back as a new instance,
    await asyncio.to_thread(server.restart)
    await epoch.refused(script_env(KEYS), epoch.run_id)
    # Then the 2 x 5 + 4 = 14 first jobs in queue order are looked up before any create,
    marked = [(await record(client, k)).get("lookup") == "1" for k in keys]
    assert marked == [True] * 14 + [False] * 16
    assert epoch.seen[0].marked == 14


async def test_a_crash_that_lost_a_sending_mark_never_turns_into_a_blind_create(
    client: aioredis.Redis, server: RedisServer
) -> None:
    # Given an invoice claimed and marked `sending` (its create on its way),
    ledger = Ledger(client, KEYS, lease_s=5)
    worker_epoch(client)
    keys = await enqueue(client, 3)
    await asyncio.sleep(1.5)  # the enqueue is on disk (everysec), the claim will not be
    held = await claim(ledger, keys[0])
    assert held is not None
    assert (await record(client, keys[0]))["state"] == "sending"
    # When the host crashes before Redis wrote the claim to disk,
    crash = await asyncio.to_thread(server.crash, 1.0)
    await asyncio.to_thread(server.start)
    assert crash.cut > 0
    fresh = aioredis.Redis.from_url(server.url)  # a worker started after the crash
    try:
        worker_epoch(fresh)
        assert (await record(fresh, keys[0]))["state"] == "queued"  # the mark is gone
        # Then its next claim looks the invoice up before creating it.
        again = await claim(Ledger(fresh, KEYS, lease_s=5), keys[0])
        assert again is not None and again.claim.create_maybe_landed
    finally:
        await fresh.aclose()
