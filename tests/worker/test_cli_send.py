"""`invoicer send`: the direct path, through typer's runner, against the sandbox over HTTP.

No Redis and no queue: each record is created (or printed, with `--dry-run`)
at once, one output line per record. The sandbox is the witness of what was
really sent.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from sandbox.client import SandboxClient
from sandbox.config import DEFAULT_MAAST_KEY, DEFAULT_STAX_KEY, SandboxConfig
from worker.cli import app

ROOT = Path(__file__).resolve().parents[2]
SMALL_CSV = ROOT / "samples" / "small.csv"
SMALL_NUMBERS = [f"INV-S-{i:04d}" for i in range(1, 6)]
HEADER = "invoice_number,customer_id,customer_first_name,customer_last_name,customer_email,"
HEADER += "description,quantity,unit_price\n"


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(sandbox_url) as client:
        await client.reset()
        await client.configure(SandboxConfig())
        yield client


def cli_env(sandbox_url: str, **extra: str | None) -> dict[str, str | None]:
    """Only what the test gives: every invoicer variable of the outer environment unset."""
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("MAAST_", "STAX_", "INVOICER_"))
    }
    env.update(
        MAAST_BASE_URL=sandbox_url,
        MAAST_API_KEY=DEFAULT_MAAST_KEY,
        STAX_BASE_URL=sandbox_url,
        STAX_API_KEY=DEFAULT_STAX_KEY,
        INVOICER_READ_TIMEOUT_S="5",
        COLUMNS="250",
    )
    env.update(extra)
    return env


async def invoke(env: dict[str, str | None], *args: str) -> Result:
    def run() -> Result:
        return CliRunner().invoke(app, list(args), env=env)

    # Each command runs its own event loop (asyncio.run): give it a thread.
    return await asyncio.to_thread(run)


def flat(text: str) -> str:
    """`text` with rich's line wrapping undone."""
    return " ".join(text.split())


def csv_file(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "invoices.csv"
    path.write_text(HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


async def test_send_creates_each_invoice_and_prints_one_line_per_record(
    sandbox: SandboxClient, sandbox_url: str
) -> None:
    result = await invoke(cli_env(sandbox_url), "send", str(SMALL_CSV), "--provider", "maast")

    assert result.exit_code == 0, result.output
    assert await sandbox.created_counts("maast") == {n: 1 for n in SMALL_NUMBERS}
    ids = {inv["invoice_number"]: inv["invoice_id"] for inv in await sandbox.invoices("maast")}
    lines = result.stdout.splitlines()
    assert len(lines) == len(SMALL_NUMBERS)
    for line, number in zip(lines, SMALL_NUMBERS, strict=True):
        assert line.startswith("created line ")
        assert f" {number}: id={ids[number]}" in line  # the id the provider gave


async def test_send_reports_invalid_records_with_line_and_field_and_exits_1(
    sandbox: SandboxClient, sandbox_url: str, tmp_path: Path
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
    result = await invoke(cli_env(sandbox_url), "send", str(path), "--provider", "maast")

    assert result.exit_code == 1, result.output
    out = flat(result.stdout)
    assert "invalid line 3 (invoice BAD-QTY-TEXT) field quantity" in out
    # Refused by Maast's own rules before any request: line, number and field.
    assert "failed line 4 BAD-QTY-HIGH" in out and "lines[0].quantity" in out
    assert "created line 2 OK-1: id=" in out and "created line 5 OK-2: id=" in out
    assert await sandbox.created_counts("maast") == {"OK-1": 1, "OK-2": 1}


async def test_dry_run_prints_exact_requests_with_the_key_redacted_and_creates_nothing(
    sandbox: SandboxClient, sandbox_url: str
) -> None:
    secret = "maast-live-key-do-not-print-31415"
    env = cli_env(sandbox_url, MAAST_API_KEY=secret)
    result = await invoke(env, "send", str(SMALL_CSV), "--provider", "maast", "--dry-run")

    assert result.exit_code == 0, result.output
    assert secret not in result.output
    requests = [json.loads(line, parse_float=Decimal) for line in result.stdout.splitlines()]
    assert [r["json"]["invoice_number"] for r in requests] == SMALL_NUMBERS
    first = requests[0]
    assert first["method"] == "POST" and first["url"] == f"{sandbox_url}/platform/invoice"
    assert first["headers"]["Authorization"] == "Basic ***"
    # Money is a JSON number with its exact digits, as on the wire.
    items = first["json"]["line_items"]
    assert items[0] == {
        "description": "Pencils HB, pack of 12",
        "quantity": 10,
        "unit_cost": Decimal("1.49"),
    }
    assert '"unit_cost":1.49' in result.stdout and '"unit_cost":95.00' in result.stdout
    assert not any(
        isinstance(i["unit_cost"], str) for r in requests for i in r["json"]["line_items"]
    )
    stats = await sandbox.stats()
    assert stats["providers"]["maast"]["requests"] == 0  # type: ignore[index]
    assert await sandbox.created_counts("maast") == {}


async def test_missing_key_exits_2_naming_the_variable(
    sandbox: SandboxClient, sandbox_url: str
) -> None:
    env = cli_env(sandbox_url, MAAST_API_KEY=None)
    result = await invoke(env, "send", str(SMALL_CSV), "--provider", "maast")

    assert result.exit_code == 2
    assert "MAAST_API_KEY" in result.stderr
    assert await sandbox.created_counts("maast") == {}


async def test_stax_stops_before_the_failure_budget_blocks_the_ip(
    sandbox: SandboxClient, sandbox_url: str, tmp_path: Path
) -> None:
    # Given a Stax account that knows none of the six customers (each create: a 422),
    await sandbox.configure(SandboxConfig(customers=frozenset({"CUST0001"})))
    rows = [f"STAX-{i},GHOST{i},Ada,Lovelace,a@x.io,Consulting,1,12.50" for i in range(6)]
    env = cli_env(sandbox_url, STAX_FAILED_PER_MINUTE="3")

    result = await invoke(env, "send", str(csv_file(tmp_path, rows)), "--provider", "stax")

    # Then it stopped after three failed requests, long before Stax's ten, and says why,
    assert result.exit_code == 1, result.output
    stats = await sandbox.stats()
    stax = stats["providers"]["stax"]  # type: ignore[index]
    assert stax["status_counts"] == {"422": 3}, stax
    assert stats["blocked_ips"] == {}
    out = flat(result.stdout)
    assert out.count("failed line") == 6
    assert out.count("stopped: 3 failed requests") == 3
