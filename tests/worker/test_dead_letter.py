"""Dead-letter entries: one builder for every entry; records refused at enqueue
parked with every problem, a message that names them, and what the user wrote."""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from jobs.errors import ErrorInfo, FieldError
from jobs.models import Provider
from jobs.sources import Record, RecordError, Source
from tests.worker.support import enqueue_records
from tests.worker.test_ledger import KEYS, REJECTED, enqueue, hgetall, make_invoice
from worker.dead_letter import entry_fields, source_from_json, source_to_json
from worker.dlq import DeadLetters
from worker.ledger import Ledger, State

HEADER = "invoice_number,customer_id,description,quantity,unit_price"


def csv_source(*rows: tuple[int, str]) -> Source:
    return Source("csv", rows, HEADER)


def test_entry_fields_are_strings_for_the_scripts() -> None:
    fields = json.loads(entry_fields(REJECTED, attempts=3))
    assert fields == {
        "reason": "rejected",
        "kind": "InvoiceRejected",
        "message": "bad customer",
        "status": "422",
        "code": "2",
        "field_errors": json.dumps([{"field": "customer.id", "message": "unknown"}]),
        "attempts": "3",
    }
    bare = ErrorInfo(kind="ProviderUnavailable", reason="unavailable", message="503")
    spent = json.loads(entry_fields(bare, attempts=8, reason="exhausted"))
    assert (spent["reason"], spent["status"], spent["code"]) == ("exhausted", "", "")


def test_a_source_survives_its_json() -> None:
    source = csv_source((12, 'INV-1,C1,"Pens, blue",x,1.00'), (13, "INV-1,C1,Ink,=1+1,2.00"))
    assert source_from_json(source_to_json(source)) == source
    assert source_from_json("") is None


async def test_refused_records_are_parked_with_every_problem_and_what_was_written(
    redis_client: aioredis.Redis,
) -> None:
    invoice = make_invoice("BAD-1")
    bad = csv_source((2, "BAD-1,cust1,Widget,0,1.00"), (3, "BAD-1,cust1,Bolt,abc,2.00"))
    nameless = csv_source((5, "no spaces allowed,c,d,1,1.00"))
    active = csv_source((6, "ACTIVE,cust1,,1,1.00"))
    items: list[Record | RecordError] = [
        RecordError(2, "must be greater than 0", "quantity", "BAD-1", invoice, source=bad),
        RecordError(3, "is not a number", "quantity", "BAD-1", source=bad),
        RecordError(5, "not a usable number", None, "no spaces allowed", source=nameless),
        RecordError(6, "required, but empty", "description", "ACTIVE", source=active),
    ]
    await enqueue(redis_client, make_invoice("ACTIVE"), batch="earlier")

    report = await enqueue_records(redis_client, KEYS, items, provider=Provider.MAAST)

    # "no spaces allowed" is no usable key, ACTIVE is queued: both only reported.
    assert (report.invalid_records, len(report.invalid), report.invalid_dead_lettered) == (3, 4, 1)
    entry = await DeadLetters(redis_client, KEYS).get("maast:BAD-1")
    assert entry is not None
    assert (entry.reason, entry.kind, entry.attempts, entry.batch) == (
        "invalid",
        "InvoiceInvalid",
        0,
        report.batch_id,
    )
    assert entry.message == (
        "lines 2-3: line 2 quantity: must be greater than 0; line 3 quantity: is not a number"
    )
    assert entry.field_errors == [
        FieldError("quantity", "must be greater than 0"),
        FieldError("quantity", "line 3: is not a number"),
    ]
    assert entry.source == bad
    assert json.loads(entry.payload)["number"] == "BAD-1"
    ledger = Ledger(redis_client, KEYS)
    record = await ledger.get("maast:BAD-1")
    assert record is not None and record.state is State.REJECTED and record.dead_lettered
    # The ledger holds the same reason, for the batch report.
    assert record.error is not None and record.error.message == entry.message
    assert record.failures == entry.attempts == 0
    kept = await ledger.get("maast:ACTIVE")
    assert kept is not None and kept.state is State.QUEUED and not kept.dead_lettered


async def test_a_number_refused_twice_in_one_file_is_one_entry_with_both_records(
    redis_client: aioredis.Redis,
) -> None:
    first = csv_source((2, "DUP-1,c,,1,1.00"))
    again = csv_source((9, "DUP-1,c,Widget,1,1.00"))
    items: list[Record | RecordError] = [
        RecordError(2, "required, but empty", "description", "DUP-1", source=first),
        Record(3, make_invoice("OK-1")),
        RecordError(
            9, "invoice DUP-1 already ended at line 2", "invoice_number", "DUP-1", source=again
        ),
    ]

    report = await enqueue_records(redis_client, KEYS, items, provider=Provider.MAAST)

    assert (report.accepted, report.invalid_records, report.records) == (1, 2, 3)
    entries = await DeadLetters(redis_client, KEYS).list()
    assert [e.invoice_key for e in entries] == ["maast:DUP-1"]
    entry = entries[0]
    assert entry.source is not None and [line for line, _ in entry.source.rows] == [2, 9]
    assert [f.field for f in entry.field_errors] == ["description", "invoice_number"]
    assert "line 2: description" in entry.message and "line 9: invoice_number" in entry.message
    batch = await hgetall(redis_client, KEYS.batch(report.batch_id))
    assert (batch[b"rejected"], batch[b"queued"], batch[b"total"]) == (b"1", b"1", b"2")


async def test_a_refused_copy_of_an_earlier_valid_invoice_never_supersedes_it(
    redis_client: aioredis.Redis,
) -> None:
    # Parked in input order, in the same pipelines as the valid invoices: the
    # valid line 2 is queued before the bad copy at line 7 is looked at.
    items: list[Record | RecordError] = [
        Record(2, make_invoice("SAME-1")),
        RecordError(7, "invoice SAME-1 already appeared at line 2", None, "SAME-1"),
    ]

    report = await enqueue_records(redis_client, KEYS, items, provider=Provider.MAAST)

    assert (report.accepted, report.superseded, report.invalid_dead_lettered) == (1, 0, 0)
    record = await Ledger(redis_client, KEYS).get("maast:SAME-1")
    assert record is not None and record.state is State.QUEUED and not record.dead_lettered
