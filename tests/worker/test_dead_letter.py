"""Dead-letter entries: one builder for every entry, invalid records parked with every problem."""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from jobs.errors import ErrorInfo, FieldError
from jobs.models import Provider
from jobs.sources import RecordError
from tests.worker.test_ledger import KEYS, REJECTED, enqueue, make_invoice
from worker.dead_letter import entry_fields, park_invalid
from worker.dlq import DeadLetters
from worker.ledger import Ledger, State


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


async def test_invalid_records_are_parked_once_per_number_with_every_problem(
    redis_client: aioredis.Redis,
) -> None:
    invoice = make_invoice("BAD-1")
    errors = [
        RecordError(2, "too long", field="number", invoice_number="BAD-1", invoice=invoice),
        RecordError(2, "at most 999", field="lines[0].quantity", invoice_number="BAD-1"),
        RecordError(5, "not a number", field=None, invoice_number="no spaces allowed"),
        RecordError(6, "lines: required", field="lines", invoice_number="ACTIVE"),
    ]
    await enqueue(redis_client, make_invoice("ACTIVE"), batch="earlier")
    parked = await park_invalid(
        redis_client, KEYS, errors, provider=Provider.MAAST, account="default", batch_id="b1"
    )
    assert parked == 1  # "no spaces allowed" is no usable key; ACTIVE is queued: only reported
    entry = await DeadLetters(redis_client, KEYS).get("maast:BAD-1")
    assert entry is not None
    assert (entry.reason, entry.kind, entry.attempts, entry.batch) == (
        "invalid",
        "InvoiceInvalid",
        0,
        "b1",
    )
    assert entry.field_errors == [
        FieldError("number", "too long"),
        FieldError("lines[0].quantity", "at most 999"),
    ]
    assert entry.message.startswith("line 2: 2 problem(s)")
    assert json.loads(entry.payload)["number"] == "BAD-1"
    ledger = Ledger(redis_client, KEYS)
    record = await ledger.get("maast:BAD-1")
    assert record is not None and record.state is State.REJECTED and record.dead_lettered
    active = await ledger.get("maast:ACTIVE")
    assert active is not None and active.state is State.QUEUED and not active.dead_lettered
