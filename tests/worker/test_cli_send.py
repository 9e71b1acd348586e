"""`invoicer send`: the direct path, through typer's runner, real Redis and the sandbox over HTTP.

`send` goes through the ledger (one ledger for every path): each record is
enqueued as a batch and run by the worker's own job function in this
process, one line per record. The sandbox is the witness of what was really
created; the ledger says what a worker would find next.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner, Result

from jobs.models import Provider
from sandbox.client import SandboxClient
from sandbox.config import DEFAULT_MAAST_KEY, DEFAULT_STAX_KEY, Faults, SandboxConfig
from tests.worker.support import start_worker, wait_all, worker_env
from worker.cli import app
from worker.keys import Keys, invoice_key
from worker.ledger import Ledger, State

ROOT = Path(__file__).resolve().parents[2]
SMALL_CSV = ROOT / "samples" / "small.csv"
SMALL_NUMBERS = [f"INV-S-{i:04d}" for i in range(1, 6)]
HEADER = "invoice_number,customer_id,customer_first_name,customer_last_name,customer_email,"
HEADER += "description,quantity,unit_price\n"
KEYS = Keys()


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(sandbox_url) as client:
        await client.reset()
        await client.configure(SandboxConfig())
        yield client


def cli_env(redis_url: str, sandbox_url: str, **extra: str | None) -> dict[str, str | None]:
    """Only what the test gives: every invoicer variable of the outer environment unset."""
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("MAAST_", "STAX_", "INVOICER_"))
    }
    env.update(
        INVOICER_REDIS_URL=redis_url,
        MAAST_BASE_URL=sandbox_url,
        MAAST_API_KEY=DEFAULT_MAAST_KEY,
        STAX_BASE_URL=sandbox_url,
        STAX_API_KEY=DEFAULT_STAX_KEY,
        INVOICER_CONNECT_TIMEOUT_S="0.5",
        INVOICER_READ_TIMEOUT_S="0.5",
        INVOICER_LANDING_WINDOW_S="6",
        COLUMNS="250",
    )
    env.update(extra)
    return env


async def invoke(env: dict[str, str | None], *args: str) -> Result:
    def run() -> Result:
        return CliRunner().invoke(app, list(args), env=env)

    # Each command runs its own event loop (asyncio.run): give it a thread.
    return await asyncio.to_thread(run)


def csv_file(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "invoices.csv"
    path.write_text(HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


async def queued_jobs(redis: aioredis.Redis, provider: Provider) -> int:
    return int(await redis.zcard(KEYS.queue(provider)))


async def test_send_creates_each_invoice_and_prints_one_line_per_record(
    redis_client: aioredis.Redis, redis_url: str, sandbox: SandboxClient, sandbox_url: str
) -> None:
    env = cli_env(redis_url, sandbox_url)
    result = await invoke(env, "send", str(SMALL_CSV), "--provider", "maast")

    assert result.exit_code == 0, result.output
    assert await sandbox.created_counts("maast") == {n: 1 for n in SMALL_NUMBERS}
    ids = {inv["invoice_number"]: inv["invoice_id"] for inv in await sandbox.invoices("maast")}
    lines = result.stdout.splitlines()
    assert len(lines) == len(SMALL_NUMBERS)
    for line, number in zip(lines, SMALL_NUMBERS, strict=True):
        assert line.startswith("created line ")
        assert f" {number}: id={ids[number]}" in line  # the id the provider gave
    # recorded in the ledger, and nothing left in the queue for a worker
    records = await Ledger(redis_client, KEYS).get_many(
        [invoice_key(Provider.MAAST, "default", n) for n in SMALL_NUMBERS]
    )
    assert all(r is not None and r.state is State.CREATED for r in records)
    assert await queued_jobs(redis_client, Provider.MAAST) == 0


async def test_send_twice_then_enqueue_and_a_worker_is_one_invoice_per_number(
    redis_client: aioredis.Redis, redis_url: str, sandbox: SandboxClient, sandbox_url: str
) -> None:
    env = cli_env(redis_url, sandbox_url)
    first = await invoke(env, "send", str(SMALL_CSV), "--provider", "maast")
    second = await invoke(env, "send", str(SMALL_CSV), "--provider", "maast")
    queued = await invoke(env, "enqueue", str(SMALL_CSV), "--provider", "maast", "--json")
    worker = start_worker(worker_env(redis_url, sandbox_url), "--providers", "maast", "--burst")
    await asyncio.to_thread(wait_all, [worker], 60)

    assert (first.exit_code, second.exit_code, queued.exit_code) == (0, 0, 0), second.output
    assert await sandbox.created_counts("maast") == {n: 1 for n in SMALL_NUMBERS}
    assert all(line.startswith("already created line ") for line in second.stdout.splitlines())
    assert json.loads(queued.stdout)["already_created"] == len(SMALL_NUMBERS)


async def test_send_looks_up_numbers_the_ledger_never_saw_before_creating(
    redis_client: aioredis.Redis, redis_url: str, sandbox: SandboxClient, sandbox_url: str
) -> None:
    # Given an invoice created at the provider by a run that had no ledger
    env = cli_env(redis_url, sandbox_url)
    await invoke(env, "send", str(SMALL_CSV), "--provider", "maast")
    await redis_client.flushdb()  # the ledger forgets: as before `send` kept one
    # When the same file is sent again
    result = await invoke(env, "send", str(SMALL_CSV), "--provider", "maast")
    # Then each number was found, not created a second time
    assert result.exit_code == 0, result.output
    assert await sandbox.created_counts("maast") == {n: 1 for n in SMALL_NUMBERS}


async def test_send_rejects_invalid_records_with_line_and_field_and_exits_1(
    redis_client: aioredis.Redis,
    redis_url: str,
    sandbox: SandboxClient,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    path = csv_file(
        tmp_path,
        [
            "OK-1,CUST0001,Ada,Lovelace,a@x.io,Consulting,1,12.50",
            "BAD-QTY-TEXT,CUST0001,Ada,Lovelace,a@x.io,Consulting,lots,12.50",
            "BAD-QTY-HIGH,CUST0001,Ada,Lovelace,a@x.io,Consulting,1000,12.50",
            "OK-2,CUST0002,Bob,Brown,b@x.io,Consulting,2,7.25",
        ],
    )
    result = await invoke(cli_env(redis_url, sandbox_url), "send", str(path), "--provider", "maast")

    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("created line 2 OK-1: id=")
    assert lines[1].startswith("rejected line 3 (invoice BAD-QTY-TEXT) field quantity")
    # refused by Maast's own rules before any request: line, number and field
    assert lines[2].startswith("rejected line 4 (invoice BAD-QTY-HIGH) field lines[0].quantity")
    assert all(line.endswith("(dead-lettered)") for line in lines[1:3])
    assert lines[3].startswith("created line 5 OK-2: id=")
    assert await sandbox.created_counts("maast") == {"OK-1": 1, "OK-2": 1}


async def test_a_record_that_cannot_finish_now_is_left_waiting_for_a_worker(
    redis_client: aioredis.Redis, redis_url: str, sandbox: SandboxClient, sandbox_url: str
) -> None:
    # Given a provider that holds every create past our read timeout
    await sandbox.set_faults(Faults(timeout_after_commit=1.0, hold_s=2.0))
    env = cli_env(redis_url, sandbox_url)
    result = await invoke(env, "send", str(SMALL_CSV), "--provider", "maast")
    # Then every line says it waits, and why; the records stay queued, in doubt
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(SMALL_NUMBERS)
    assert all("left queued for `invoicer worker`" in line for line in lines), lines
    assert all("OutcomeUnknown" in line for line in lines)
    records = await Ledger(redis_client, KEYS).get_many(
        [invoice_key(Provider.MAAST, "default", n) for n in SMALL_NUMBERS]
    )
    assert {r.state for r in records if r is not None} == {State.IN_DOUBT}
    assert await queued_jobs(redis_client, Provider.MAAST) == len(SMALL_NUMBERS)


async def test_dry_run_prints_json_lines_only_needs_no_key_and_no_redis(
    sandbox: SandboxClient, sandbox_url: str, tmp_path: Path
) -> None:
    path = csv_file(
        tmp_path,
        [
            "OK-1,CUST0001,Ada,Lovelace,a@x.io,Pencils,10,1.49",
            "BAD-QTY-TEXT,CUST0001,Ada,Lovelace,a@x.io,Consulting,lots,12.50",
            "OK-2,CUST0002,Bob,Brown,b@x.io,Desk,1,95.00",
        ],
    )
    # no API key, and a Redis URL nothing listens on: neither is touched
    env = cli_env("redis://127.0.0.1:1/0", sandbox_url, MAAST_API_KEY=None)
    result = await invoke(env, "send", str(path), "--provider", "maast", "--dry-run")

    assert result.exit_code == 1, result.output  # one record is invalid
    # stdout is JSON lines only (jq-clean); the human text went to stderr
    requests = [json.loads(line, parse_float=Decimal) for line in result.stdout.splitlines()]
    assert [r["json"]["invoice_number"] for r in requests] == ["OK-1", "OK-2"]
    assert "invalid line 3 (invoice BAD-QTY-TEXT) field quantity" in result.stderr
    first = requests[0]
    assert first["method"] == "POST" and first["url"] == f"{sandbox_url}/platform/invoice"
    assert first["headers"]["Authorization"] == "Basic ***"
    # money is a JSON number with its exact digits, as on the wire
    items = first["json"]["line_items"]
    assert items[0] == {"description": "Pencils", "quantity": 10, "unit_cost": Decimal("1.49")}
    assert '"unit_cost":95.00' in result.stdout
    stats = await sandbox.stats()
    assert stats["providers"]["maast"]["requests"] == 0  # type: ignore[index]


async def test_dry_run_never_prints_the_key(sandbox: SandboxClient, sandbox_url: str) -> None:
    secret = "maast-live-key-do-not-print-31415"
    env = cli_env("redis://127.0.0.1:1/0", sandbox_url, MAAST_API_KEY=secret)
    result = await invoke(env, "send", str(SMALL_CSV), "--provider", "maast", "--dry-run")
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert len(result.stdout.splitlines()) == len(SMALL_NUMBERS)


async def test_missing_key_exits_2_naming_the_variable(
    redis_url: str, sandbox: SandboxClient, sandbox_url: str
) -> None:
    env = cli_env(redis_url, sandbox_url, MAAST_API_KEY=None)
    result = await invoke(env, "send", str(SMALL_CSV), "--provider", "maast")

    assert result.exit_code == 2
    assert "MAAST_API_KEY" in result.stderr
    assert await sandbox.created_counts("maast") == {}


async def test_stax_stops_before_the_failure_budget_blocks_the_ip(
    redis_client: aioredis.Redis,
    redis_url: str,
    sandbox: SandboxClient,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    # Given a Stax account that knows none of the six customers (each create: a 422),
    await sandbox.configure(SandboxConfig(customers=frozenset({"CUST0001"})))
    rows = [f"STAX-{i},GHOST{i},Ada,Lovelace,a@x.io,Consulting,1,12.50" for i in range(6)]
    env = cli_env(redis_url, sandbox_url, STAX_FAILED_PER_MINUTE="3")

    result = await invoke(env, "send", str(csv_file(tmp_path, rows)), "--provider", "stax")

    # Then it stopped after three failed requests, long before Stax's ten, and says why,
    assert result.exit_code == 1, result.output
    stats = await sandbox.stats()
    stax = stats["providers"]["stax"]  # type: ignore[index]
    # (each number the ledger did not know is looked up first: the 200s)
    assert stax["status_counts"] == {"200": 3, "422": 3}, stax
    assert stats["blocked_ips"] == {}
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["rejected"] * 3 + ["waiting"] * 3
    assert all("InvoiceRejected(422" in line for line in lines[:3])
    assert all("left queued for `invoicer worker`" in line for line in lines[3:])
