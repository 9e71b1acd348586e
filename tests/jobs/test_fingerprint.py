"""`Invoice.fingerprint()`: one hash of the payload JSON enqueue already builds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from jobs.models import Invoice, fingerprint_of


def _invoice(**changes: object) -> Invoice:
    data: dict[str, object] = {
        "number": "INV-1",
        "customer": {"id": "C1", "first_name": "Ada", "address": {"city": "Oslo"}},
        "lines": [{"description": "Work", "quantity": "2", "unit_price": "10.50"}],
        "invoice_date": "2025-01-31T09:30:00Z",
        "tax": {"kind": "rate", "value": "7.25"},
        "terms": {"kind": "days", "days": 30},
    }
    return Invoice.model_validate(data | changes)


def test_fingerprint_is_the_hash_of_the_payload_json() -> None:
    invoice = _invoice()
    assert invoice.fingerprint() == fingerprint_of(invoice.model_dump_json())
    assert len(invoice.fingerprint()) == 32


def test_equal_content_equal_fingerprint_even_after_a_round_trip() -> None:
    # Requeue and the worker rebuild the invoice from its payload: the same
    # content must hash the same, or a retry would look like a conflict.
    invoice = _invoice()
    again = Invoice.model_validate_json(invoice.model_dump_json())
    assert again == invoice and again.fingerprint() == invoice.fingerprint()
    assert _invoice().fingerprint() == invoice.fingerprint()


@pytest.mark.parametrize(
    "changes",
    [
        {"number": "INV-2"},
        {"lines": [{"description": "Work", "quantity": "3", "unit_price": "10.50"}]},
        {"invoice_date": "2025-01-31"},
        {"send": True},
        {"customer": {"id": "C1", "first_name": "Ada"}},
    ],
)
def test_different_content_different_fingerprint(changes: dict[str, object]) -> None:
    assert _invoice(**changes).fingerprint() != _invoice().fingerprint()


def test_decimal_scale_is_not_content() -> None:
    # "10.5" and "10.50" are the same amount: the model keeps one spelling, so
    # a re-saved spreadsheet is a duplicate, not a conflict.
    a = _invoice(lines=[{"description": "W", "quantity": "1", "unit_price": Decimal("10.5")}])
    b = _invoice(lines=[{"description": "W", "quantity": "1.0", "unit_price": Decimal("10.50")}])
    assert a == b
    assert a.fingerprint() == b.fingerprint()
