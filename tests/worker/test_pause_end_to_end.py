"""Pauses: a bad key pauses the provider for every worker, and so does `invoicer pause`.

Real worker processes against real Redis and the sandbox. A 401 must never
dead-letter a batch: the records stay queued, visibly waiting (`invoicer
status --json`), the ERROR is logged once across processes, and `invoicer
resume` lets a worker with a fixed key finish them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner, Result

from jobs.models import Provider
from sandbox.client import SandboxClient
from tests.worker.support import enqueue, invoice, start_worker, wait_all, worker_env
from worker.cli import app
from worker.dlq import DeadLetters
from worker.keys import Keys, invoice_key
from worker.ledger import Ledger, State

pytestmark = pytest.mark.slow
KEYS = Keys()
BAD_KEY = "not-the-maast-key-5150"
REPORTED = "paused until resumed by hand"
"""The ERROR line of worker/pauses.py, logged by the first process to see the 401."""


async def invoke(redis_url: str, *args: str) -> Result:
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("MAAST_", "STAX_", "INVOICER_"))
    }
    env.update(INVOICER_REDIS_URL=redis_url, COLUMNS="250")

    def run() -> Result:
        return CliRunner().invoke(app, list(args), env=env)

    return await asyncio.to_thread(run)


async def maast_status(redis_url: str) -> dict[str, object]:
    result = await invoke(redis_url, "status", "--json")
    assert result.exit_code == 0, result.output
    snapshot = json.loads(result.stdout)
    (maast,) = [p for p in snapshot["providers"] if p["provider"] == "maast"]
    return dict(maast, counts=snapshot["counts"])


async def wait_paused(redis_url: str, timeout_s: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while not (status := await maast_status(redis_url))["paused"]:
        assert time.monotonic() < deadline, f"maast never paused: {status}"
        await asyncio.sleep(0.1)
    return status


async def stop_all(workers: list[subprocess.Popen[bytes]]) -> str:
    """SIGTERM every worker; their stderr, joined (each must exit 0)."""
    for w in workers:
        w.send_signal(signal.SIGTERM)
    errors = []
    for w in workers:
        _, err = await asyncio.to_thread(w.communicate, timeout=30)
        assert w.returncode == 0, err.decode()[-3000:]
        errors.append(err.decode())
    return "\n".join(errors)


async def states(redis: aioredis.Redis, numbers: list[str]) -> set[State]:
    keys = [invoice_key(Provider.MAAST, "default", n) for n in numbers]
    records = await Ledger(redis, KEYS).get_many(keys)
    assert all(r is not None for r in records)
    return {r.state for r in records if r is not None}


async def maast_requests(sandbox: SandboxClient) -> int:
    stats = await sandbox.stats()
    return int(stats["providers"]["maast"]["requests"])  # type: ignore[index]


async def test_bad_key_pauses_once_keeps_records_queued_and_resume_finishes(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    # Given a batch and two workers holding a key Maast refuses,
    bad = worker_env(redis_url, sandbox_url, MAAST_API_KEY=BAD_KEY)
    numbers = [f"KEY-{i:03d}" for i in range(15)]
    await enqueue(bad, [invoice(n) for n in numbers], Provider.MAAST)
    workers = [start_worker(bad, "--providers", "maast") for _ in range(2)]

    # When Maast answers 401,
    status = await wait_paused(redis_url)
    await asyncio.sleep(2)  # both workers have met the pause by now
    stderr = await stop_all(workers)

    # Then Maast is paused until resumed, with the reason, and the records wait,
    assert status["paused_until_ms"] is None
    assert "401" in str(status["paused_reason"]), status
    status = await maast_status(redis_url)
    assert status["paused"] is True and status["counts"]["queued"] == len(numbers)  # type: ignore[index]
    assert await states(redis_client, numbers) == {State.QUEUED}
    assert await DeadLetters(redis_client, KEYS).count() == 0
    # the ERROR was logged once across both processes, and the key never.
    assert stderr.count(REPORTED) == 1, stderr[-3000:]
    assert "ERROR" in next(line for line in stderr.splitlines() if REPORTED in line)
    assert BAD_KEY not in stderr
    assert await sandbox.created_counts("maast") == {}
    stats = await sandbox.stats()
    refused = stats["providers"]["maast"]["status_counts"]  # type: ignore[index]
    assert set(refused) == {"401"}, refused  # refused, never created

    # When the operator resumes with a fixed key,
    result = await invoke(redis_url, "resume", "maast")
    assert result.exit_code == 0 and "resumed" in result.stdout
    fixed = worker_env(redis_url, sandbox_url)
    await asyncio.to_thread(wait_all, [start_worker(fixed, "--providers", "maast", "--burst")], 60)

    # Then a new worker creates every invoice, once.
    assert await sandbox.created_counts("maast") == {n: 1 for n in numbers}
    assert await states(redis_client, numbers) == {State.CREATED}
    assert (await maast_status(redis_url))["paused"] is False


async def test_operator_pause_stops_every_request_until_resumed(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    env = worker_env(redis_url, sandbox_url)
    numbers = [f"HOLD-{i:03d}" for i in range(10)]
    await enqueue(env, [invoice(n) for n in numbers], Provider.MAAST)
    result = await invoke(redis_url, "pause", "maast", "--reason", "month-end freeze")
    assert result.exit_code == 0 and "paused" in result.stdout

    # While paused, a worker runs and calls Maast not once; the records stay queued.
    worker = start_worker(env, "--providers", "maast")
    await asyncio.sleep(3)
    assert worker.poll() is None
    await stop_all([worker])
    assert await maast_requests(sandbox) == 0
    assert await states(redis_client, numbers) == {State.QUEUED}
    status = await maast_status(redis_url)
    assert status["paused"] is True and status["paused_reason"] == "month-end freeze"

    # Once resumed, a worker finishes them.
    assert (await invoke(redis_url, "resume", "maast")).exit_code == 0
    await asyncio.to_thread(wait_all, [start_worker(env, "--providers", "maast", "--burst")], 60)
    assert await sandbox.created_counts("maast") == {n: 1 for n in numbers}
    assert await states(redis_client, numbers) == {State.CREATED}
