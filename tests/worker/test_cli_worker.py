"""`invoicer worker`: refuses to start without the keys it needs (exit 2, naming
them), and with `--burst` drains the queues and exits 0 (a real process
against real Redis and the sandbox)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner, Result

from jobs.models import Provider
from sandbox.client import SandboxClient
from tests.worker.support import enqueue, invoice, start_worker, wait_all, worker_env
from worker.cli import app
from worker.keys import Keys, invoice_key
from worker.ledger import Ledger, State

KEYS = Keys()


async def invoke(env: dict[str, str | None], *args: str) -> Result:
    def run() -> Result:
        return CliRunner().invoke(app, list(args), env=env)

    return await asyncio.to_thread(run)


def no_keys_env(redis_url: str, **extra: str) -> dict[str, str | None]:
    """The outer environment's provider and invoicer variables unset."""
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("MAAST_", "STAX_", "INVOICER_"))
    }
    env.update(INVOICER_REDIS_URL=redis_url, COLUMNS="250", **extra)
    return env


async def test_no_provider_key_exits_2_naming_the_variables(redis_url: str) -> None:
    result = await invoke(no_keys_env(redis_url), "worker", "--burst")

    assert result.exit_code == 2
    assert "MAAST_API_KEY" in result.stderr and "STAX_API_KEY" in result.stderr


async def test_stax_without_its_key_exits_2_naming_it(redis_url: str) -> None:
    env = no_keys_env(redis_url, MAAST_API_KEY="some-maast-key")
    result = await invoke(env, "worker", "--providers", "stax", "--burst")

    assert result.exit_code == 2
    assert "STAX_API_KEY" in result.stderr and "MAAST_API_KEY" not in result.stderr


@pytest.mark.slow
async def test_burst_drains_every_queue_with_a_key_and_exits_0(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    env = worker_env(redis_url, sandbox_url)
    maast = [invoice(f"WB-M-{i:03d}") for i in range(20)]
    stax = [invoice(f"WB-S-{i:03d}") for i in range(5)]
    await enqueue(env, list(maast), Provider.MAAST)
    await enqueue(env, list(stax), Provider.STAX)

    # No --providers: every provider with a key (both here).
    worker = start_worker(env, "--burst")
    await asyncio.to_thread(wait_all, [worker], 60)  # asserts exit code 0

    assert await sandbox.created_counts("maast") == {i.number: 1 for i in maast}
    assert await sandbox.created_counts("stax") == {i.number: 1 for i in stax}
    ledger = Ledger(redis_client, KEYS)
    keys = [invoice_key(Provider.MAAST, "default", i.number) for i in maast]
    keys += [invoice_key(Provider.STAX, "default", i.number) for i in stax]
    records = await ledger.get_many(keys)
    assert {r.state for r in records if r is not None} == {State.CREATED}
    assert all(r is not None for r in records)
    for provider in Provider:
        assert await redis_client.zcard(KEYS.queue(provider)) == 0


@pytest.mark.slow
async def test_worker_says_what_it_serves_and_sums_up_a_burst(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    env = worker_env(redis_url, sandbox_url, STAX_RATE_PER_MINUTE="600")
    await enqueue(env, [invoice(f"WS-M-{i:03d}") for i in range(4)], Provider.MAAST)
    await enqueue(env, [invoice("WS-S-000")], Provider.STAX)

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "worker", "worker", "--burst"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    banner = [line for line in done.stderr.splitlines() if line.startswith("worker:")]
    assert banner[0] == f"worker: draining maast at {sandbox_url} (no shared limit)"
    limits = "600/min shared, pauses after 8 failed requests/min"
    assert banner[1] == f"worker: draining stax at {sandbox_url} ({limits})"
    assert "jobs in flight per queue" in banner[2] and "(--burst)" in banner[2]
    assert "INVOICER_REDIS_URL" in banner[2] or "embedded" in banner[2]
    summary = done.stdout.splitlines()
    assert summary[0].startswith("burst done in ") and summary[0].endswith(
        "5 jobs run by this worker"
    )
    assert "  maast: 4 created, 0 dead-lettered meanwhile (all workers); 0 left" in summary
    assert "  stax: 1 created, 0 dead-lettered meanwhile (all workers); 0 left" in summary


@pytest.mark.slow
async def test_burst_finishes_what_it_can_and_exits_1_saying_what_waits_on_a_pause(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    # Given maast invoices, and stax invoices behind a key Stax refuses,
    env = worker_env(redis_url, sandbox_url, STAX_API_KEY="not-the-stax-key-5150")
    maast = [invoice(f"WP-M-{i:03d}") for i in range(5)]
    stax = [invoice(f"WP-S-{i:03d}") for i in range(4)]
    await enqueue(env, list(maast), Provider.MAAST)
    await enqueue(env, list(stax), Provider.STAX)

    # a burst worker creates what it can, then stops instead of waiting forever,
    worker = start_worker(env, "--burst")
    _, err = await asyncio.to_thread(worker.communicate, timeout=60)
    stderr = err.decode()
    assert worker.returncode == 1, stderr[-3000:]
    assert await sandbox.created_counts("maast") == {i.number: 1 for i in maast}
    assert await sandbox.created_counts("stax") == {}
    # saying what waits on which pause and how it ends,
    (line,) = [x for x in stderr.splitlines() if x.startswith("stopped:")]
    assert "stax: 4 invoice(s) wait on its pause" in line and "STAX_API_KEY" in line
    assert "invoicer resume stax" in line
    # while status shows the pause and what waits on it,
    result = await invoke(no_keys_env(redis_url), "status", "--json")
    snapshot = json.loads(result.stdout)
    (paused,) = [p for p in snapshot["providers"] if p["paused"]]
    assert paused["provider"] == "stax" and snapshot["counts"]["queued"] == len(stax)
    assert paused["eta_s"] is None and snapshot["eta_s"] is None

    # and once the key is fixed and Stax resumed, the next burst finishes them.
    assert (await invoke(no_keys_env(redis_url), "resume", "stax")).exit_code == 0
    await asyncio.to_thread(
        wait_all, [start_worker(worker_env(redis_url, sandbox_url), "--burst")], 60
    )
    assert await sandbox.created_counts("stax") == {i.number: 1 for i in stax}
