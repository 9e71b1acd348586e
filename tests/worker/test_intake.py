"""Intake: one record in, the enqueue script's arguments out, or every reason why not."""

from __future__ import annotations

import json
from decimal import Decimal

from jobs.models import Invoice, Provider
from jobs.sources import Record, RecordError
from tests.worker.test_ledger import make_invoice
from worker.intake import Intake, prepare, prepared


def test_a_valid_record_becomes_the_script_arguments_with_send_forced() -> None:
    invoice = make_invoice("A-1")
    result = prepare(Record(7, invoice), Intake(Provider.MAAST, "eu", send=True))
    assert isinstance(result, tuple)
    line, number, (key, fingerprint, payload, number_arg, send) = result
    assert (line, number, key, number_arg, send) == (7, "A-1", "maast@eu:A-1", "A-1", "1")
    sent = invoice.model_copy(update={"send": True})
    assert json.loads(payload) == json.loads(sent.model_dump_json())
    assert fingerprint == sent.fingerprint()


def test_a_record_for_another_provider_is_refused_before_any_rule() -> None:
    def never(invoice: Invoice) -> None:
        raise AssertionError("the provider's rules ran")

    record = Record(3, make_invoice("B"), provider=Provider.STAX)
    assert prepare(record, Intake(Provider.MAAST, rules=never)) == [
        RecordError(
            3,
            "record is for stax, this batch is for maast",
            field="provider",
            invoice_number="B",
        )
    ]


def test_the_providers_rules_refuse_with_one_error_per_field() -> None:
    invoice = make_invoice("X-" + "9" * 30)  # Maast: a shorter number
    big = invoice.lines[0].model_copy(update={"quantity": Decimal(1000)})  # Maast: at most 999
    invoice = invoice.model_copy(update={"lines": [big]})
    errors = prepare(Record(4, invoice), Intake(Provider.MAAST))
    assert isinstance(errors, list) and len(errors) == 2
    assert all(e.line == 4 and e.invoice == invoice for e in errors)
    assert all(e.invoice_number == invoice.number for e in errors)
    assert {e.field for e in errors} == {"number", "lines[0].quantity"}


def test_a_stream_keeps_its_order_and_reader_errors_pass_through() -> None:
    unreadable = RecordError(2, "lines: required", field="lines", invoice_number="Z")
    records: list[Record | RecordError] = [unreadable, Record(3, make_invoice("C"))]
    records.append(Record(4, make_invoice("D")))
    taken = list(prepared(records, Intake(Provider.MAAST)))
    assert taken[0] is unreadable
    assert [t[1] for t in taken[1:] if isinstance(t, tuple)] == ["C", "D"]
