"""`invoicer dlq` end to end through typer's runner, against a real Redis with
dead letters written by the ledger's own API."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import redis.asyncio as aioredis
import typer
from typer.testing import CliRunner

from jobs.errors import ErrorInfo, FieldError
from jobs.models import Customer, Invoice, LineItem, Provider
from jobs.sources import Record
from tests.worker.support import enqueue_records
from worker.cli import dlq as dlq_cli
from worker.dlq import DeadLetters
from worker.keys import Keys, invoice_key
from worker.ledger import Ledger, State

KEYS = Keys()
REJECTED = ErrorInfo(
    kind="InvoiceRejected",
    reason="rejected",
    message="=unit price below minimum",
    status=422,
    code="2",
    field_errors=(FieldError("lines[0].unit_price", "must be at least 1.00"),),
)
UNKNOWN = ErrorInfo(kind="OutcomeUnknown", reason="outcome_unknown", message="read timeout")


def invoice(number: str, price: str = "0.50") -> Invoice:
    return Invoice(
        number=number,
        customer=Customer(id="cust1"),
        lines=[LineItem(description="Widget", quantity=Decimal(1), unit_price=Decimal(price))],
    )


def key(number: str) -> str:
    return invoice_key(Provider.MAAST, "default", number)


async def park(redis: aioredis.Redis, rejected: list[str], in_doubt: list[str]) -> str:
    """Enqueue one batch and dead-letter its invoices as rejected or in doubt."""
    numbers = rejected + in_doubt
    records = [Record(line=i + 2, invoice=invoice(n)) for i, n in enumerate(numbers)]
    report = await enqueue_records(redis, KEYS, records, provider=Provider.MAAST, batch=None)
    ledger = Ledger(redis, KEYS)
    for number in numbers:
        record = await ledger.get(key(number))
        assert record is not None
        held = await ledger.claim(key(number), record.job_id)
        assert held is not None
        await held.mark_sending()
        if number in in_doubt:
            await held.mark_in_doubt(UNKNOWN)
            await held.dead_letter(UNKNOWN, attempts=8, exhausted=True)
        else:
            await held.dead_letter(REJECTED, attempts=1)
        await held.release()
    return report.batch_id


async def invoke(redis_url: str, *args: str) -> tuple[int, str, str]:
    cli = typer.Typer()
    dlq_cli.register(cli)
    env = {"INVOICER_REDIS_URL": redis_url, "COLUMNS": "250"}
    # Each command runs its own event loop: give it a thread of its own.
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["dlq", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


async def test_list_filters_and_json(redis_client: aioredis.Redis, redis_url: str) -> None:
    batch = await park(redis_client, ["R-1", "R-2"], ["D-1"])
    other = await park(redis_client, ["R-3"], [])
    code, stdout, _ = await invoke(redis_url, "list")
    assert code == 0
    assert all(k in stdout for k in ("maast:R-1", "maast:R-2", "maast:D-1", "maast:R-3"))
    assert "422/2" in stdout
    code, stdout, _ = await invoke(redis_url, "list", "--json", "--batch", batch)
    entries = json.loads(stdout)
    assert sorted(e["invoice_key"] for e in entries) == ["maast:D-1", "maast:R-1", "maast:R-2"]
    assert {e["batch"] for e in entries} == {batch} != {other}
    code, stdout, _ = await invoke(redis_url, "list", "--json", "--reason", "in_doubt")
    (doubt,) = json.loads(stdout)
    assert doubt["invoice_key"] == "maast:D-1" and doubt["kind"] == "OutcomeUnknown"
    code, stdout, _ = await invoke(redis_url, "list", "--json", "--limit", "2")
    assert len(json.loads(stdout)) == 2


async def test_show_everything_or_exit_2(redis_client: aioredis.Redis, redis_url: str) -> None:
    await park(redis_client, ["R-1"], [])
    code, stdout, _ = await invoke(redis_url, "show", "maast:R-1")
    assert code == 0
    assert "lines[0].unit_price: must be at least 1.00" in stdout
    assert '"number": "R-1"' in stdout  # the payload, pretty
    assert "history" in stdout and "enqueued" in stdout
    code, stdout, _ = await invoke(redis_url, "show", "maast:R-1", "--json")
    data = json.loads(stdout)
    assert data["payload"]["number"] == "R-1"
    assert data["field_errors"] == [
        {"field": "lines[0].unit_price", "message": "must be at least 1.00"}
    ]
    assert data["history"][0]["event"] == "enqueued"
    code, _, stderr = await invoke(redis_url, "show", "maast:NOPE")
    assert code == 2 and "no dead letter" in stderr


async def test_requeue_with_corrected_payload(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    await park(redis_client, ["R-1"], [])
    fixed = tmp_path / "fixed.json"
    fixed.write_text(invoice("R-1", price="5.00").model_dump_json())
    code, stdout, stderr = await invoke(redis_url, "requeue", "maast:R-1", "--payload", str(fixed))
    assert code == 0, stderr
    assert "requeued" in stdout
    record = await Ledger(redis_client, KEYS).get(key("R-1"))
    assert record is not None
    assert record.state is State.QUEUED and record.generation == 2
    assert Invoice.model_validate_json(record.payload).lines[0].unit_price == Decimal("5.00")
    assert await DeadLetters(redis_client, KEYS).get(key("R-1")) is None
    assert await redis_client.exists(f"arq:job:{record.job_id}")


async def test_requeue_refuses_bad_payloads_and_unknown_keys(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    await park(redis_client, ["R-1"], [])
    bad = tmp_path / "bad.json"
    body = json.loads(invoice("R-1").model_dump_json())
    body["lines"][0]["quantity"] = "0"
    body["currency"] = "dollars"
    bad.write_text(json.dumps(body))
    code, _, stderr = await invoke(redis_url, "requeue", "maast:R-1", "--payload", str(bad))
    assert code == 2
    assert "lines[0].quantity" in stderr and "currency" in stderr
    other = tmp_path / "other.json"
    other.write_text(invoice("R-9").model_dump_json())
    code, _, stderr = await invoke(redis_url, "requeue", "maast:R-1", "--payload", str(other))
    assert code == 2 and "R-9" in stderr
    code, _, stderr = await invoke(redis_url, "requeue", "maast:NOPE")
    assert code == 2 and "no dead letter" in stderr
    for args in ((), ("maast:R-1", "--all"), ("--all", "--payload", str(other))):
        code, _, _ = await invoke(redis_url, "requeue", *args)
        assert code == 2, args
    # Nothing above touched the entry.
    assert await DeadLetters(redis_client, KEYS).count() == 1


async def test_requeue_in_doubt_keeps_lookup_first(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    await park(redis_client, [], ["D-1"])
    code, stdout, _ = await invoke(redis_url, "requeue", "maast:D-1")
    assert code == 0 and "requeued" in stdout
    record = await Ledger(redis_client, KEYS).get(key("D-1"))
    assert record is not None
    # Still in doubt: the worker must look it up before any create.
    assert record.state is State.IN_DOUBT and record.generation == 2


async def test_requeue_batch_and_all(redis_client: aioredis.Redis, redis_url: str) -> None:
    batch = await park(redis_client, ["R-1", "R-2"], [])
    await park(redis_client, ["R-3"], [])
    code, stdout, _ = await invoke(redis_url, "requeue", "--batch", batch)
    assert code == 0 and "2 superseded" in stdout
    assert await DeadLetters(redis_client, KEYS).count() == 1
    code, stdout, _ = await invoke(redis_url, "requeue", "--all")
    assert code == 0 and "1 superseded" in stdout
    code, stdout, _ = await invoke(redis_url, "requeue", "--all")
    assert code == 0 and "nothing to requeue" in stdout


async def test_discard(redis_client: aioredis.Redis, redis_url: str) -> None:
    await park(redis_client, ["R-1"], [])
    code, stdout, _ = await invoke(redis_url, "discard", "maast:R-1")
    assert code == 0 and "discarded" in stdout
    record = await Ledger(redis_client, KEYS).get(key("R-1"))
    assert record is not None and record.state is State.DISCARDED
    code, _, stderr = await invoke(redis_url, "discard", "maast:R-1")
    assert code == 2 and "no dead letter" in stderr


async def test_export_csv(redis_client: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
    await park(redis_client, ["-R1", "R-2"], ["D-1"])
    code, stdout, stderr = await invoke(redis_url, "export", "--csv")
    assert code == 0 and "exported 3" in stderr
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert len(rows) == 3
    by_key = {r["invoice_key"]: r for r in rows}
    # Spreadsheet formulas are defused: a number and a message starting with - and =.
    assert by_key["maast:-R1"]["number"] == "'-R1"
    assert by_key["maast:R-2"]["message"] == "'=unit price below minimum"
    target = tmp_path / "dlq.csv"
    code, _, _ = await invoke(
        redis_url, "export", "--csv", "--reason", "in_doubt", "--out", str(target)
    )
    assert code == 0
    (only,) = list(csv.DictReader(io.StringIO(target.read_text())))
    assert only["invoice_key"] == "maast:D-1" and only["reason"] == "in_doubt"


async def test_payload_only_round_trips_into_requeue(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    await park(redis_client, ["R-1"], [])
    code, stdout, _ = await invoke(redis_url, "show", "maast:R-1", "--payload-only")
    assert code == 0
    body = json.loads(stdout)
    assert "tax" not in body  # defaults left out for people
    assert Invoice.model_validate(body) == invoice("R-1")
    body["lines"][0]["unit_price"] = "2.00"
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps(body))
    code, _, stderr = await invoke(redis_url, "requeue", "maast:R-1", "--payload", str(fixed))
    assert code == 0, stderr
