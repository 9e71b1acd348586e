"""The invoice model: validation, dates, totals and the content fingerprint."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from jobs.models import Invoice, InvoiceReceipt, LineItem, Provider

quantities = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(1000), places=2)
prices = st.decimals(min_value=Decimal(0), max_value=Decimal(10_000), places=2)
line_lists = st.lists(
    st.builds(
        lambda d, q, p: {"description": d, "quantity": q, "unit_price": p},
        st.sampled_from(["Widget", "Gadget", "Support"]),
        quantities,
        prices,
    ),
    min_size=1,
    max_size=5,
)


def invoice_data(**changes: Any) -> dict[str, Any]:
    """A valid invoice as plain data, with `changes` applied."""
    data: dict[str, Any] = {
        "number": "INV-1",
        "customer": {"id": "cust1", "email": "a@example.com"},
        "lines": [{"description": "Widget", "quantity": "2", "unit_price": "10.00"}],
    }
    data.update(changes)
    return data


def field_errors(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"quantity": "0"}, "lines.0.quantity"),
        ({"quantity": "-1"}, "lines.0.quantity"),
        ({"quantity": "NaN"}, "lines.0.quantity"),
        ({"quantity": "two"}, "lines.0.quantity"),
        ({"unit_price": "-0.01"}, "lines.0.unit_price"),
        ({"unit_price": "1.005"}, "lines.0.unit_price"),
        ({"unit_price": "Infinity"}, "lines.0.unit_price"),
        ({"unit_price": "ten"}, "lines.0.unit_price"),
        ({"description": ""}, "lines.0.description"),
    ],
)
def test_bad_lines_are_refused_naming_the_field(line: dict[str, str], field: str) -> None:
    base = {"description": "Widget", "quantity": "1", "unit_price": "1.00"}
    with pytest.raises(ValidationError) as caught:
        Invoice.model_validate(invoice_data(lines=[{**base, **line}]))
    assert field_errors(caught.value) == {field}


def test_more_than_two_decimals_says_so() -> None:
    with pytest.raises(ValidationError, match="more than 2 decimal places"):
        LineItem(description="Widget", quantity=Decimal(1), unit_price=Decimal("0.001"))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"number": ""}, "number"),
        ({"number": "INV 1"}, "number"),  # becomes part of Redis keys and URLs
        ({"number": "x" * 65}, "number"),
        ({"lines": []}, "lines"),
        ({"currency": "usd"}, "currency"),
        ({"customer": {"id": ""}}, "customer.id"),
        ({"tax": {"kind": "rate", "value": "-1"}}, "tax.value"),
        ({"terms": {"kind": "days"}}, "terms"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_invoices_are_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Invoice.model_validate(invoice_data(**changes))
    assert field_errors(caught.value) == {field}


def test_float_input_becomes_an_exact_decimal() -> None:
    line = LineItem.model_validate({"description": "Widget", "quantity": 1.1, "unit_price": 0.1})
    assert line.unit_price == Decimal("0.1") and line.quantity == Decimal("1.1")
    assert isinstance(line.unit_price, Decimal)


def test_models_are_frozen() -> None:
    invoice = Invoice.model_validate(invoice_data())
    with pytest.raises(ValidationError):
        invoice.number = "INV-2"  # type: ignore[misc]


# -- invoice_date -----------------------------------------------------------------------


def test_a_bare_date_stays_a_date() -> None:
    invoice = Invoice.model_validate(invoice_data(invoice_date="2024-05-01"))
    assert invoice.invoice_date == date(2024, 5, 1)
    assert type(invoice.invoice_date) is date
    assert invoice.model_dump(mode="json")["invoice_date"] == "2024-05-01"


@pytest.mark.parametrize(
    ("given_text", "expected"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        (
            "2024-05-01T10:00:00+02:00",
            datetime(2024, 5, 1, 10, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2024-05-01 10:00:00", datetime(2024, 5, 1, 10)),
    ],
)
def test_a_timestamp_is_kept_as_a_timestamp(given_text: str, expected: datetime) -> None:
    invoice = Invoice.model_validate(invoice_data(invoice_date=given_text))
    assert isinstance(invoice.invoice_date, datetime)
    assert invoice.invoice_date == expected
    assert invoice.invoice_date.utcoffset() == expected.utcoffset()
    # and it survives the queue: JSON out, JSON in
    assert Invoice.model_validate_json(invoice.model_dump_json()) == invoice


def test_timestamp_keeps_its_offset() -> None:
    invoice = Invoice.model_validate(invoice_data(invoice_date="2024-05-01T10:00:00-05:00"))
    assert isinstance(invoice.invoice_date, datetime)
    assert invoice.invoice_date.utcoffset() == timedelta(hours=-5)
    assert invoice.invoice_date.tzinfo == timezone(timedelta(hours=-5))


def test_date_objects_are_accepted() -> None:
    invoice = Invoice.model_validate(invoice_data(invoice_date=date(2024, 1, 2)))
    assert invoice.invoice_date == date(2024, 1, 2)


def test_a_malformed_date_is_refused() -> None:
    with pytest.raises((ValidationError, ValueError)):
        Invoice.model_validate(invoice_data(invoice_date="2024-13-01"))


# -- totals -----------------------------------------------------------------------------


def test_totals_with_a_rate_tax() -> None:
    invoice = Invoice.model_validate(
        invoice_data(
            lines=[
                {"description": "A", "quantity": "3", "unit_price": "19.99"},
                {"description": "B", "quantity": "0.5", "unit_price": "0.01"},
            ],
            tax={"kind": "rate", "value": "8.25"},
        )
    )
    totals = invoice.totals()
    # 59.97 + 0.005 = 59.975 -> 59.98; 8.25% = 4.94835 -> 4.95
    assert (totals.subtotal, totals.tax, totals.total) == (
        Decimal("59.98"),
        Decimal("4.95"),
        Decimal("64.93"),
    )


def test_totals_with_an_amount_tax() -> None:
    invoice = Invoice.model_validate(invoice_data(tax={"kind": "amount", "value": "1.5"}))
    assert invoice.totals().total == Decimal("21.50")


@given(lines=line_lists)
def test_total_is_the_sum_of_lines_rounded(lines: list[dict[str, Any]]) -> None:
    invoice = Invoice.model_validate(invoice_data(lines=lines))
    exact = sum((Decimal(x["quantity"]) * Decimal(x["unit_price"]) for x in lines), Decimal(0))
    assert abs(invoice.totals().total - exact) <= Decimal("0.005")
    assert invoice.totals().total.as_tuple().exponent == -2


# -- fingerprint ------------------------------------------------------------------------


@given(lines=line_lists, send=st.booleans())
def test_fingerprint_is_equal_for_equal_invoices(lines: list[dict[str, Any]], send: bool) -> None:
    a = Invoice.model_validate(invoice_data(lines=lines, send=send))
    b = Invoice.model_validate_json(a.model_dump_json())  # as it comes back off the queue
    assert a == b
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 32


@given(lines=line_lists, other=line_lists)
def test_fingerprint_differs_when_lines_differ(
    lines: list[dict[str, Any]], other: list[dict[str, Any]]
) -> None:
    a = Invoice.model_validate(invoice_data(lines=lines))
    b = Invoice.model_validate(invoice_data(lines=other))
    assert (a.fingerprint() == b.fingerprint()) == (a == b)


@pytest.mark.parametrize(
    "changes",
    [
        {"number": "INV-2"},
        {"customer": {"id": "cust2", "email": "a@example.com"}},
        {"customer": {"id": "cust1", "email": "b@example.com"}},
        {"currency": "EUR"},
        {"send": True},
        {"tax": {"kind": "rate", "value": "5"}},
        {"invoice_date": "2024-05-01"},
        {"notes": {"memo": "thanks"}},
    ],
)
def test_fingerprint_changes_with_any_content(changes: dict[str, Any]) -> None:
    base = Invoice.model_validate(invoice_data())
    changed = Invoice.model_validate(invoice_data(**changes))
    assert base.fingerprint() != changed.fingerprint()


def test_fingerprint_ignores_how_an_equal_amount_is_written() -> None:
    a = Invoice.model_validate(
        invoice_data(lines=[{"description": "W", "quantity": "1", "unit_price": "10"}])
    )
    b = Invoice.model_validate(
        invoice_data(lines=[{"description": "W", "quantity": "1.0", "unit_price": "10.00"}])
    )
    assert a == b
    assert a.fingerprint() == b.fingerprint()


def test_receipt_round_trips_through_json() -> None:
    receipt = InvoiceReceipt(
        provider=Provider.STAX,
        provider_id="abc",
        invoice_number="INV-1",
        status="DRAFT",
        total=Decimal("12.30"),
    )
    assert InvoiceReceipt.model_validate_json(receipt.model_dump_json()) == receipt
    assert not receipt.sent
