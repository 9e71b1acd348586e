"""`worker.durability` on real servers: what each setting risks, and when an
enqueue may call its records safe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from jobs.models import Provider
from jobs.sources import Record
from tests.redis_server import RedisServer
from tests.worker.support import enqueue_records
from tests.worker.test_ledger import make_invoice
from worker.durability import (
    SETTLE_S,
    Policy,
    confirm_enqueued,
    read_durability,
    startup_warning,
)
from worker.enqueue import EnqueueReport
from worker.epoch import Epoch, RecoveryParams
from worker.keys import Keys
from worker.lua import script_env

KEYS = Keys("d:")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, RedisServer]]:
    """Three servers: AOF fsynced on every write, every second, and no AOF."""
    found = {
        "always": RedisServer(tmp_path / "always", appendfsync="always"),
        "everysec": RedisServer(tmp_path / "everysec", appendfsync="everysec"),
        "off": RedisServer(tmp_path / "off", appendonly="no"),
    }
    for s in found.values():
        s.start()
    yield found
    for s in found.values():
        s.close()


async def test_each_setting_is_read_and_what_it_risks_is_said_naming_it(
    servers: dict[str, RedisServer],
) -> None:
    seen = {}
    for name, server in servers.items():
        client = aioredis.Redis.from_url(server.url)
        seen[name] = await read_durability(client)
        await client.aclose()
    assert {n: d.policy for n, d in seen.items()} == {
        "always": Policy.ALWAYS,
        "everysec": Policy.EVERYSEC,
        "off": Policy.OFF,
    }
    assert seen["always"].run_id == servers["always"].run_id()
    assert startup_warning(seen["always"]) is None
    assert "appendfsync everysec" in (startup_warning(seen["everysec"]) or "")
    off = startup_warning(seen["off"]) or ""
    assert "appendonly no" in off and "set appendonly yes" in off


async def test_a_redis_that_refuses_config_is_said_to_be_unchecked(
    servers: dict[str, RedisServer],
) -> None:
    # A managed Redis often forbids CONFIG: a user without it, here.
    admin = aioredis.Redis.from_url(servers["always"].url)
    await admin.acl_setuser(
        "app", enabled=True, passwords=["+s3cret-pass"], keys=["*"], commands=["+@all", "-config"]
    )
    limited = aioredis.Redis.from_url(servers["always"].url, username="app", password="s3cret-pass")
    try:
        durability = await read_durability(limited)
    finally:
        await limited.aclose()
        await admin.aclose()
    assert durability.policy is Policy.UNKNOWN
    assert "could not read Redis's persistence settings" in (startup_warning(durability) or "")


async def test_a_worker_logs_the_risk_once_at_start(
    servers: dict[str, RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    client = aioredis.Redis.from_url(servers["off"].url)
    try:
        epoch = Epoch.of(client)
        epoch.configure(RecoveryParams(worker=True))
        await epoch.env(script_env(KEYS))
        await epoch.env(script_env(KEYS))
    finally:
        await client.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.name == "invoicer.redis"]
    assert len(warnings) == 1 and "appendonly no" in warnings[0]


async def enqueue_three(client: aioredis.Redis) -> EnqueueReport:
    records = [Record(line=i + 2, invoice=make_invoice(f"D-{i}")) for i in range(3)]
    return await enqueue_records(client, KEYS, records, provider=Provider.MAAST)


async def test_an_enqueue_says_when_its_records_are_on_disk(
    servers: dict[str, RedisServer],
) -> None:
    results = {}
    for name, server in servers.items():
        client = aioredis.Redis.from_url(server.url)
        started = time.monotonic()
        report = await enqueue_three(client)
        results[name] = (report, time.monotonic() - started)
        await client.aclose()
    always, _ = results["always"]
    assert always.durable is True and "appendfsync always" in always.durability
    everysec, waited = results["everysec"]
    assert everysec.durable is True and waited >= SETTLE_S
    off, _ = results["off"]
    assert off.durable is None and "appendonly no" in off.durability
    assert off.ok


async def test_an_enqueue_whose_redis_restarted_meanwhile_says_to_run_it_again(
    servers: dict[str, RedisServer],
) -> None:
    server = servers["everysec"]
    client = aioredis.Redis.from_url(server.url)
    try:
        before = await read_durability(client)
        # The records are written, then the host crashes before the fsync.
        await asyncio.to_thread(server.crash, 1.0)
        await asyncio.to_thread(server.start)
        confirmation = await confirm_enqueued(client, before, last_write_at=time.monotonic())
    finally:
        await client.aclose()
    assert confirmation.durable is False
    assert "Redis restarted during this run" in confirmation.message
    assert "run the same command again" in confirmation.message


async def test_no_confirmation_is_claimed_under_the_os_flush_policy(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "no", appendfsync="no")
    server.start()
    client = aioredis.Redis.from_url(server.url)
    try:
        before = await read_durability(client)
        confirmation = await confirm_enqueued(client, before, last_write_at=time.monotonic())
    finally:
        await client.aclose()
        server.close()
    assert before.policy is Policy.OS
    assert confirmation.durable is None and "appendfsync no" in confirmation.message
