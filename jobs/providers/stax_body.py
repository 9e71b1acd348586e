"""The Stax create body, both ways, and what Stax refuses in it.

`request_from_invoice` turns the neutral `Invoice` into Stax's create body
(docs/providers.md, Stax: Endpoints the code calls; our invoice number goes
in `meta.reference`) and
`invoice_from_request` reads one back (the JSONL reader uses it);
`invoice_problems` lists every local refusal. Pure functions: no HTTP, no
I/O. `jobs.providers.stax` re-exports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Final

from jobs.errors import FieldError
from jobs.models import Invoice
from jobs.providers.json_body import as_decimal, as_mapping, as_number, dumps, present

MAX_META_CHARS: Final = 60_000
TIMESTAMP_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

_BODY_KEYS: Final = frozenset(
    {
        "customer_id",
        "url",
        "total",
        "meta",
        "send_now",
        "is_partial_payment_enabled",
        "invoice_date_at",
        "due_at",
        "funding",
    }
)
_PAYMENT_KEYS: Final = (
    ("card", "isCCPaymentEnabled"),
    ("ach", "isACHPaymentEnabled"),
    ("tips", "isTipEnabled"),
)
_META_KEYS: Final = frozenset(
    {"lineItems", "subtotal", "tax", "memo", "reference"} | {m for _, m in _PAYMENT_KEYS}
)


def request_from_invoice(invoice: Invoice) -> dict[str, object]:
    """Stax's create body for `invoice`; fields that are `None` are left out.

    Stax knows amounts, not rules: a RATE tax goes as its computed amount and
    DAYS terms as a due date (`invoice_date` + days, or today + days).
    """
    totals = invoice.totals()
    body: dict[str, object] = {
        "customer_id": invoice.customer.id,
        "url": invoice.stax.url,
        "total": totals.total,
        "meta": meta_from_invoice(invoice),
        "send_now": True if invoice.send else None,
        "is_partial_payment_enabled": invoice.payment.partial,
        "invoice_date_at": render_timestamp(invoice.invoice_date) if invoice.invoice_date else None,
        "due_at": _due_at(invoice),
        "funding": [{"account_id": f.account_id, "amount": f.amount} for f in invoice.funding]
        or None,
    }
    return present(body)


def meta_from_invoice(invoice: Invoice) -> dict[str, object]:
    """The `meta` object: lines, amounts, memo, our number and payment options."""
    totals = invoice.totals()
    lines = [
        {
            "item": line.name or line.description,
            "details": line.description,
            "quantity": as_number(line.quantity),
            "price": line.unit_price,
        }
        for line in invoice.lines
    ]
    meta: dict[str, object] = {
        "lineItems": lines,
        "subtotal": totals.subtotal,
        "tax": totals.tax,
        "memo": invoice.notes.memo,
        "reference": invoice.number,
    }
    meta |= {stax: getattr(invoice.payment, name) for name, stax in _PAYMENT_KEYS}
    return present(meta)


def invoice_from_request(body: Mapping[str, object]) -> Invoice:
    """The neutral invoice a Stax create body describes (inverse of `request_from_invoice`).

    A zero `meta.tax` means no tax; other taxes come back as amounts, due
    dates as DATE terms.

    Raises:
        ValueError: unknown fields, malformed parts, or amounts that do not add up.
    """
    unknown = sorted(set(body) - _BODY_KEYS)
    meta = as_mapping(body.get("meta"), "meta")
    unknown += sorted(f"meta.{k}" for k in set(meta) - _META_KEYS)
    if unknown:
        raise ValueError(f"not Stax create fields: {', '.join(unknown)}")
    payment = {name: meta.get(stax) for name, stax in _PAYMENT_KEYS}
    fields: dict[str, object] = {
        "number": meta.get("reference"),
        "customer": {"id": body.get("customer_id")},
        "lines": [_line_from(item) for item in _list(meta.get("lineItems"), "meta.lineItems")],
        "tax": _tax_from(meta.get("tax")),
        "invoice_date": _date_from(body.get("invoice_date_at")),
        "terms": _terms_from(body.get("due_at")),
        "notes": {"memo": meta.get("memo")},
        "payment": payment | {"partial": body.get("is_partial_payment_enabled")},
        "send": body.get("send_now") is True,
        "funding": _list(body.get("funding"), "funding"),
        "stax": {"url": body.get("url")},
    }
    invoice = Invoice.model_validate(present(fields))
    _check_amounts(invoice, body, meta)
    return invoice


def invoice_problems(invoice: Invoice) -> list[FieldError]:
    """Every reason Stax would refuse `invoice`, all at once.

    Each refusal at Stax counts toward the ten failed requests a minute that
    block our IP for an hour, so everything Stax is known to refuse is
    checked here (docs/providers.md, Stax: Endpoints the code calls).
    """
    problems: list[FieldError] = []
    if invoice.currency != "USD":
        problems.append(FieldError("currency", "Stax invoices are in USD only"))
    if not invoice.customer.id.strip():
        problems.append(FieldError("customer.id", "Stax requires the customer id"))
    if not invoice.stax.url.strip():
        problems.append(FieldError("stax.url", "Stax requires the hosted page url"))
    if invoice.funding:
        funded = sum((f.amount for f in invoice.funding), Decimal(0))
        total = invoice.totals().total
        if funded != total:
            problems.append(
                FieldError("funding", f"amounts add up to {funded}, not the total {total}")
            )
    meta_chars = len(dumps(meta_from_invoice(invoice)))
    if meta_chars > MAX_META_CHARS:
        problems.append(
            FieldError("lines", f"meta is {meta_chars} characters; Stax takes {MAX_META_CHARS}")
        )
    return problems


def render_timestamp(value: date | datetime) -> str:
    """Stax's `YYYY-MM-DD HH:MM:SS` (UTC, no zone); a date is its midnight."""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return moment.strftime(TIMESTAMP_FORMAT)
    return f"{value.isoformat()} 00:00:00"


def _due_at(invoice: Invoice) -> str | None:
    terms = invoice.terms
    if terms is None:
        return None
    if terms.kind == "date" and terms.due_date is not None:
        due = terms.due_date
    else:
        due = _day_of(invoice.invoice_date) + timedelta(days=terms.days or 0)
    return f"{due.isoformat()} 23:59:59"


def _day_of(value: date | datetime | None) -> date:
    if value is None:
        return datetime.now(UTC).date()  # Stax's own default invoice date is now
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    return value


def _date_from(value: object) -> object:
    # Midnight is how a plain date is sent, so it comes back as a date.
    if isinstance(value, str) and value.strip().endswith(" 00:00:00"):
        return value.strip()[:10]
    return value


def _terms_from(value: object) -> dict[str, object] | None:
    if value is None:
        return None
    return {"kind": "date", "due_date": str(value).strip()[:10]}


def _tax_from(value: object) -> dict[str, object] | None:
    amount = as_decimal(value)
    if value is not None and amount is None:
        raise ValueError("meta.tax must be an amount")
    if not amount:
        return None
    return {"kind": "amount", "value": amount}


def _line_from(value: object) -> dict[str, object]:
    item = as_mapping(value, "meta.lineItems[]")
    unknown = sorted(set(item) - {"item", "details", "quantity", "price"})
    if unknown:
        raise ValueError(f"not Stax line item fields: {', '.join(unknown)}")
    details = item.get("details") if item.get("details") is not None else item.get("item")
    name = item.get("item")
    return {
        "description": details,
        "name": name if name != details else None,
        "quantity": as_decimal(item.get("quantity")),
        "unit_price": as_decimal(item.get("price")),
    }


def _check_amounts(
    invoice: Invoice, body: Mapping[str, object], meta: Mapping[str, object]
) -> None:
    totals = invoice.totals()
    stated = {
        "total": (body.get("total"), totals.total),
        "meta.subtotal": (meta.get("subtotal"), totals.subtotal),
    }
    for where, (given, computed) in stated.items():
        if given is not None and as_decimal(given) != computed:
            raise ValueError(f"{where} is {given} but the lines add up to {computed}")


def _list(value: object, where: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list")
    return value


__all__ = [
    "MAX_META_CHARS",
    "invoice_from_request",
    "invoice_problems",
    "meta_from_invoice",
    "render_timestamp",
    "request_from_invoice",
]
