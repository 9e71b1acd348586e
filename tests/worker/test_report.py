"""`write_report` and `invoicer report` against a real Redis: content, order,
paging, formula escaping, unknown batches."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import typer
from typer.testing import CliRunner

from jobs.errors import ErrorInfo, FieldError
from jobs.models import Customer, Invoice, InvoiceReceipt, LineItem, Provider
from jobs.sources import Record
from tests.worker.support import enqueue_records
from worker.cli import status as status_cli
from worker.keys import Keys, invoice_key
from worker.ledger import Ledger, LedgerRecord
from worker.report import COLUMNS, safe_cell, write_report
from worker.status import UnknownBatch

KEYS = Keys()


def invoice(number: str, price: str = "10.00") -> Invoice:
    return Invoice(
        number=number,
        customer=Customer(id="cust1"),
        lines=[LineItem(description="Consulting", quantity=Decimal(2), unit_price=Decimal(price))],
    )


async def enqueue(redis: aioredis.Redis, numbers: Sequence[str]) -> str:
    records = [Record(line=i + 2, invoice=invoice(n)) for i, n in enumerate(numbers)]
    report = await enqueue_records(redis, KEYS, records, provider=Provider.MAAST, batch="r")
    assert report.accepted == len(numbers)
    return report.batch_id


async def finish(redis: aioredis.Redis) -> str:
    """INV-1 created (with a hostile link), -2 rejected, INV-3 queued."""
    batch = await enqueue(redis, ["INV-1", "-2", "INV-3"])
    ledger = Ledger(redis, KEYS)
    for number, act in (("INV-1", "create"), ("-2", "reject")):
        key = invoice_key(Provider.MAAST, "default", number)
        record = await ledger.get(key)
        assert record is not None
        held = await ledger.claim(key, record.job_id)
        assert held is not None
        await held.mark_sending()
        if act == "create":
            await held.mark_created(
                InvoiceReceipt(
                    provider=Provider.MAAST,
                    provider_id="p-1",
                    invoice_number=number,
                    status="SAVED",
                    link='=HYPERLINK("http://evil")',
                    total=Decimal("20.00"),
                )
            )
        else:
            error = ErrorInfo(
                kind="InvoiceRejected",
                reason="rejected",
                message="validation failed",
                status=422,
                code="2",
                field_errors=(FieldError("lines[0].unit_price", "too small"),),
            )
            await held.dead_letter(error, attempts=1)
    return batch


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_report_content_and_formula_escaping(redis_client: aioredis.Redis) -> None:
    batch = await finish(redis_client)
    out = io.StringIO()
    assert await write_report(redis_client, KEYS, batch, out) == 3
    text = out.getvalue()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    by_key = {r["invoice_key"]: r for r in rows(text)}
    created, rejected, queued = (by_key[f"maast:{n}"] for n in ("INV-1", "-2", "INV-3"))
    assert created["state"] == "created" and created["provider_id"] == "p-1"
    assert created["link"] == '\'=HYPERLINK("http://evil")'
    assert created["total"] == "20.00" and created["reason"] == ""
    assert rejected["invoice_number"] == "'-2"
    assert rejected["invoice_key"] == "maast:-2"
    assert rejected["state"] == "rejected"
    assert rejected["reason"] == (
        "InvoiceRejected(422/2): validation failed [lines[0].unit_price: too small]"
    )
    assert rejected["total"] == "20.00"
    assert queued["state"] == "queued" and queued["provider_id"] == "" and queued["attempts"] == "0"
    assert queued["updated_at"].endswith("Z") and "T" in queued["updated_at"]


async def test_pages_cover_every_member_with_flat_reads(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    numbers = [f"N-{i:02d}" for i in range(23)]
    batch = await enqueue(redis_client, numbers)
    seen_pages: list[int] = []
    real_get_many = Ledger.get_many

    async def spy(self: Ledger, keys: Sequence[str]) -> list[LedgerRecord | None]:
        seen_pages.append(len(keys))
        return await real_get_many(self, keys)

    monkeypatch.setattr(Ledger, "get_many", spy)
    out = io.StringIO()
    assert await write_report(redis_client, KEYS, batch, out, page_size=5) == 23
    assert sorted(r["invoice_number"] for r in rows(out.getvalue())) == numbers
    assert seen_pages == [5, 5, 5, 5, 3]


async def test_rows_in_enqueue_order(redis_client: aioredis.Redis) -> None:
    # Not alphabetical: the order must come from enqueueing, not from names.
    numbers = [f"{chr(ord('Z') - i % 26)}-{i}" for i in range(23)]
    batch = await enqueue(redis_client, numbers)
    out = io.StringIO()
    await write_report(redis_client, KEYS, batch, out, page_size=5)
    assert [r["invoice_number"] for r in rows(out.getvalue())] == numbers


async def test_unknown_batch_writes_nothing(redis_client: aioredis.Redis) -> None:
    out = io.StringIO()
    with pytest.raises(UnknownBatch):
        await write_report(redis_client, KEYS, "nope", out)
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("INV-1", "INV-1"),
        ("", ""),
    ],
)
def test_safe_cell(value: str, expected: str) -> None:
    assert safe_cell(value) == expected


async def invoke(redis_url: str, *args: str) -> tuple[int, str, str]:
    cli = typer.Typer()
    status_cli.register(cli)
    env = {"INVOICER_REDIS_URL": redis_url, "COLUMNS": "200"}
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


async def test_cli_writes_file_or_exits_2(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    batch = await finish(redis_client)
    target = tmp_path / "report.csv"
    code, _, stderr = await invoke(redis_url, "report", "--batch", batch, "--out", str(target))
    assert code == 0, stderr
    assert "wrote 3 invoices" in stderr
    assert sorted(r["invoice_number"] for r in rows(target.read_text())) == [
        "'-2",
        "INV-1",
        "INV-3",
    ]
    missing = tmp_path / "missing.csv"
    code, _, stderr = await invoke(redis_url, "report", "--batch", "nope", "--out", str(missing))
    assert code == 2 and "unknown batch" in stderr
    left = await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert left == [target]  # no partial or temporary file left
