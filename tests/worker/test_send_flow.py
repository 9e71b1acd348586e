"""`--send` / `Invoice.send`: created, then sent to the customer exactly once.

Real worker processes, real Redis, the sandbox over HTTP. Maast creates a
draft and sends it with a second call (which the sandbox refuses twice: only
a SAVED invoice can be sent); Stax sends on create (`send_now`). The sandbox's
record of each send's recipients is the witness.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import cast

import httpx2
import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner, Result

from jobs.models import Invoice, Provider
from sandbox.client import SandboxClient
from sandbox.config import Faults
from tests.worker.support import invoice, settings_of, start_worker, wait_all, worker_env
from worker import api
from worker.cli import app
from worker.keys import Keys, invoice_key
from worker.ledger import Ledger, State

pytestmark = pytest.mark.slow
KEYS = Keys()
HEADER = "invoice_number,customer_id,customer_first_name,customer_last_name,customer_email,"
HEADER += "description,quantity,unit_price\n"


async def recipients(sandbox_url: str, provider: str) -> dict[str, list[object]]:
    """Provider invoice id -> every send's recipients (one entry per send call)."""
    async with httpx2.AsyncClient(base_url=sandbox_url, trust_env=False) as http:
        response = await http.get(f"/_sandbox/recipients/{provider}")
        response.raise_for_status()
        return cast(dict[str, list[object]], response.json())


async def ledger_states(
    redis: aioredis.Redis, provider: Provider, numbers: list[str]
) -> set[State]:
    keys = [invoice_key(provider, "default", n) for n in numbers]
    records = await Ledger(redis, KEYS).get_many(keys)
    assert all(r is not None for r in records)
    return {r.state for r in records if r is not None}


async def enqueue_to_send(env: dict[str, str], items: list[Invoice], provider: Provider) -> None:
    report = await api.enqueue_invoices(
        items, provider=provider, batch="send", send=True, settings=settings_of(env)
    )
    assert report.accepted == len(items)


async def drain(env: dict[str, str], provider: Provider) -> None:
    worker = start_worker(env, "--providers", provider.value, "--burst")
    await asyncio.to_thread(wait_all, [worker], 60)


async def test_maast_enqueue_send_creates_then_sends_each_once(
    redis_url: str,
    redis_client: aioredis.Redis,
    sandbox: SandboxClient,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    # Given a file enqueued with `invoicer enqueue --send`,
    env = worker_env(redis_url, sandbox_url)
    numbers = [f"SEND-{i:03d}" for i in range(12)]
    path = tmp_path / "to-send.csv"
    rows = [f"{n},CUST0001,Ada,Lovelace,a@x.io,Consulting,1,12.50\n" for n in numbers]
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    cli_env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("INVOICER_")}
    cli_env.update(INVOICER_REDIS_URL=redis_url)

    def run() -> Result:
        args = ["enqueue", str(path), "--provider", "maast", "--send", "--json"]
        return CliRunner().invoke(app, args, env=cli_env)

    result = await asyncio.to_thread(run)
    assert result.exit_code == 0, result.output

    # When a worker drains the queue,
    await drain(env, Provider.MAAST)

    # Then each invoice exists once, is OUTSTANDING (sent), and was sent by one call,
    assert await sandbox.created_counts("maast") == {n: 1 for n in numbers}
    stored = await sandbox.invoices("maast")
    assert {inv["status"] for inv in stored} == {"OUTSTANDING"}
    sends = await recipients(sandbox_url, "maast")
    assert sorted(sends) == sorted(str(inv["invoice_id"]) for inv in stored)
    assert all(len(calls) == 1 for calls in sends.values())
    # and the ledger says sent.
    assert await ledger_states(redis_client, Provider.MAAST, numbers) == {State.SENT}


async def test_maast_send_dropped_after_commit_is_looked_up_not_resent(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    # Given a sandbox that performs every send and then drops the connection,
    await sandbox.set_faults(Faults(seed=3, targets=frozenset({"send"}), drop_after_commit=1.0))
    env = worker_env(redis_url, sandbox_url)
    items = [invoice(f"DROP-{i:03d}") for i in range(8)]
    await enqueue_to_send(env, items, Provider.MAAST)

    await drain(env, Provider.MAAST)

    # Then every send was dropped once, and the worker asked instead of sending again:
    events = await sandbox.fault_events()
    assert [e["kind"] for e in events] == ["drop_after_commit"] * len(items)
    sends = await recipients(sandbox_url, "maast")
    assert len(sends) == len(items) and all(len(calls) == 1 for calls in sends.values())
    stats = await sandbox.stats()
    maast = stats["providers"]["maast"]  # type: ignore[index]
    assert "400" not in maast["status_counts"], maast  # no second send of an OUTSTANDING one
    assert {inv["status"] for inv in await sandbox.invoices("maast")} == {"OUTSTANDING"}
    assert await sandbox.created_counts("maast") == {i.number: 1 for i in items}
    numbers = [i.number for i in items]
    assert await ledger_states(redis_client, Provider.MAAST, numbers) == {State.SENT}


async def test_stax_sends_on_create(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    env = worker_env(redis_url, sandbox_url, STAX_RATE_PER_MINUTE="6000")
    items = [invoice(f"STAX-SEND-{i:03d}") for i in range(6)]
    await enqueue_to_send(env, items, Provider.STAX)

    await drain(env, Provider.STAX)

    # One request per invoice (create with send_now), each SENT.
    assert await sandbox.created_counts("stax") == {i.number: 1 for i in items}
    stored = await sandbox.invoices("stax")
    assert {inv["status"] for inv in stored} == {"SENT"}
    assert all(inv["sent_at"] for inv in stored)
    stats = await sandbox.stats()
    assert stats["providers"]["stax"]["requests"] == len(items)  # type: ignore[index]
    numbers = [i.number for i in items]
    assert await ledger_states(redis_client, Provider.STAX, numbers) == {State.SENT}
