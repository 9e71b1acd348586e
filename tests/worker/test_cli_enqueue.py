"""`invoicer enqueue` (and `dlq requeue --payload` of what it parked) through
typer's runner, against a real Redis: exit codes, the JSON report, and what
the ledger and the dead-letter queue hold afterwards."""

from __future__ import annotations

import asyncio
import json
import os
from decimal import Decimal
from pathlib import Path

import redis.asyncio as aioredis
from typer.testing import CliRunner, Result

from jobs.models import Provider
from worker.cli import app
from worker.dlq import DeadLetters
from worker.keys import Keys, invoice_key
from worker.ledger import Ledger, State

ROOT = Path(__file__).resolve().parents[2]
SMALL_CSV = ROOT / "samples" / "small.csv"
SMALL_NUMBERS = [f"INV-S-{i:04d}" for i in range(1, 6)]
KEYS = Keys()
HEADER = "invoice_number,customer_id,customer_first_name,customer_last_name,customer_email,"
HEADER += "description,quantity,unit_price\n"
REPORT_FIELDS = {
    "records",
    "invalid_records",
    "batch_id",
    "provider",
    "ok",
    "accepted",
    "invalid_dead_lettered",
    "superseded",
    "duplicates",
    "already_created",
    "conflicts",
    "invalid",
    "durable",
    "durability",
}


def cli_env(redis_url: str) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("MAAST_", "STAX_", "INVOICER_"))
    }
    env.update(INVOICER_REDIS_URL=redis_url, COLUMNS="250")
    return env


async def invoke(redis_url: str, *args: str) -> Result:
    def run() -> Result:
        return CliRunner().invoke(app, list(args), env=cli_env(redis_url))

    # Each command runs its own event loop (asyncio.run): give it a thread.
    return await asyncio.to_thread(run)


async def enqueue_json(redis_url: str, path: Path) -> tuple[int, dict[str, object]]:
    result = await invoke(redis_url, "enqueue", str(path), "--provider", "maast", "--json")
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def csv_file(tmp_path: Path, rows: list[str], name: str = "invoices.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def key(number: str) -> str:
    return invoice_key(Provider.MAAST, "default", number)


async def states(redis: aioredis.Redis, numbers: list[str]) -> dict[str, State | None]:
    records = await Ledger(redis, KEYS).get_many([key(n) for n in numbers])
    return {n: None if r is None else r.state for n, r in zip(numbers, records, strict=True)}


async def test_enqueue_small_sample_as_json(redis_client: aioredis.Redis, redis_url: str) -> None:
    code, report = await enqueue_json(redis_url, SMALL_CSV)

    assert code == 0
    assert set(report) == REPORT_FIELDS
    assert report["provider"] == "maast" and report["ok"] is True
    assert report["accepted"] == 5 and report["duplicates"] == 0
    assert report["conflicts"] == [] and report["invalid"] == []
    # On disk, or (CI's Redis runs without AOF) not promised: never lost.
    assert report["durable"] is not False and report["durability"]
    assert str(report["batch_id"]).startswith("b-")
    assert set((await states(redis_client, SMALL_NUMBERS)).values()) == {State.QUEUED}
    assert await redis_client.zcard(KEYS.queue(Provider.MAAST)) == 5


async def test_invalid_rows_exit_1_and_numbered_ones_are_dead_lettered(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    path = csv_file(
        tmp_path,
        [
            "OK-1,CUST0001,Ada,Lovelace,a@x.io,Consulting,1,12.50",
            "BAD-QTY-HIGH,CUST0001,Ada,Lovelace,a@x.io,Consulting,1000,12.50",
            "BAD-QTY-TEXT,CUST0001,Ada,Lovelace,a@x.io,Consulting,lots,12.50",
            # No number: reported, and (docs/input-formats.md) its neighbour too.
            ",CUST0001,Ada,Lovelace,a@x.io,Consulting,1,12.50",
        ],
    )
    code, report = await enqueue_json(redis_url, path)

    assert code == 1 and report["ok"] is False and report["accepted"] == 1
    invalid = report["invalid"]
    assert isinstance(invalid, list)
    found = {(e["line"], e["invoice_number"], e["field"]) for e in invalid}
    assert {
        (3, "BAD-QTY-HIGH", "lines[0].quantity"),
        (4, "BAD-QTY-TEXT", "quantity"),
        (5, None, "invoice_number"),
    } <= found
    assert {line for line, _, _ in found} == {3, 4, 5}
    # Those with an invoice number are parked with the reason and the fields to fix.
    assert report["invalid_dead_lettered"] == 2
    dead = await DeadLetters(redis_client, KEYS).list(limit=10)
    assert {d.number for d in dead} == {"BAD-QTY-TEXT", "BAD-QTY-HIGH"}
    assert all(d.reason == "invalid" and d.field_errors for d in dead)
    got = await states(redis_client, ["OK-1", "BAD-QTY-HIGH"])
    assert got == {"OK-1": State.QUEUED, "BAD-QTY-HIGH": State.REJECTED}

    # The human report lists the invalid records with their lines too.
    result = await invoke(redis_url, "enqueue", str(path), "--provider", "maast")
    assert result.exit_code == 1
    out = " ".join(result.stdout.split())
    assert "invalid line 3 (invoice BAD-QTY-HIGH) field lines[0].quantity" in out
    assert "invalid line 4 (invoice BAD-QTY-TEXT) field quantity" in out
    assert "invalid line 5 field invoice_number" in out


async def test_enqueueing_twice_counts_duplicates(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    await enqueue_json(redis_url, SMALL_CSV)
    code, again = await enqueue_json(redis_url, SMALL_CSV)

    assert code == 0 and again["ok"] is True
    assert again["accepted"] == 0 and again["duplicates"] == 5
    assert await redis_client.zcard(KEYS.queue(Provider.MAAST)) == 5


async def test_same_number_with_other_content_is_a_conflict(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    first = csv_file(tmp_path, ["C-1,CUST0001,Ada,Lovelace,a@x.io,Consulting,1,12.50"], "a.csv")
    changed = csv_file(tmp_path, ["C-1,CUST0001,Ada,Lovelace,a@x.io,Consulting,1,99.00"], "b.csv")
    assert (await enqueue_json(redis_url, first))[0] == 0

    code, report = await enqueue_json(redis_url, changed)

    assert code == 1 and report["accepted"] == 0
    conflicts = report["conflicts"]
    assert isinstance(conflicts, list) and len(conflicts) == 1
    assert conflicts[0]["line"] == 2 and conflicts[0]["invoice_number"] == "C-1"
    # The queued invoice keeps its first content.
    record = await Ledger(redis_client, KEYS).get(key("C-1"))
    assert record is not None and record.state is State.QUEUED
    assert Decimal(json.loads(record.payload)["lines"][0]["unit_price"]) == Decimal("12.50")


async def test_missing_file_and_unknown_column_exit_2(redis_url: str, tmp_path: Path) -> None:
    result = await invoke(redis_url, "enqueue", str(tmp_path / "nope.csv"), "--provider", "maast")
    assert result.exit_code == 2 and "nope.csv" in result.stderr

    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER.replace("\n", ",colour\n") + "X-1,C1,A,B,a@x.io,D,1,1.00,red\n")
    result = await invoke(redis_url, "enqueue", str(bad), "--provider", "maast")
    assert result.exit_code == 2
    assert "colour" in result.stderr and "unknown column" in result.stderr


async def test_requeue_with_a_corrected_payload_supersedes_the_invalid_record(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    path = csv_file(tmp_path, ["FIX-1,CUST0001,Ada,Lovelace,a@x.io,Consulting,1000,12.50"])
    code, report = await enqueue_json(redis_url, path)
    assert code == 1 and report["invalid_dead_lettered"] == 1
    fixed = tmp_path / "fixed.json"
    fixed.write_text(
        json.dumps(
            {
                "number": "FIX-1",
                "customer": {"id": "CUST0001", "first_name": "Ada", "email": "a@x.io"},
                "lines": [{"description": "Consulting", "quantity": 10, "unit_price": "12.50"}],
            }
        )
    )

    result = await invoke(redis_url, "dlq", "requeue", key("FIX-1"), "--payload", str(fixed))

    assert result.exit_code == 0, result.output
    assert "requeued" in result.stdout
    record = await Ledger(redis_client, KEYS).get(key("FIX-1"))
    assert record is not None and record.state is State.QUEUED
    assert Decimal(json.loads(record.payload)["lines"][0]["quantity"]) == 10
    assert await DeadLetters(redis_client, KEYS).get(key("FIX-1")) is None
    assert await redis_client.zcard(KEYS.queue(Provider.MAAST)) == 1


async def test_requeue_without_payload_of_a_record_that_never_parsed_exits_2(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    path = csv_file(tmp_path, ["RAW-1,CUST0001,Ada,Lovelace,a@x.io,Consulting,lots,12.50"])
    assert (await enqueue_json(redis_url, path))[1]["invalid_dead_lettered"] == 1

    result = await invoke(redis_url, "dlq", "requeue", key("RAW-1"))

    assert result.exit_code == 2, result.output
    assert "dlq export --source" in " ".join(result.stderr.split())
    assert await DeadLetters(redis_client, KEYS).get(key("RAW-1")) is not None
