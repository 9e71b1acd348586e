"""The Maast create body, both ways.

`request_from_invoice` turns the neutral `Invoice` into Maast's create body
(docs/providers.md, Maast: Endpoints the code calls) and
`invoice_from_request` reads one back exactly (the
JSONL reader uses it); what Maast refuses in a body is `maast_checks`. Pure
functions: no HTTP, no I/O. `jobs.providers.maast` re-exports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Final

from jobs.models import Contact, Invoice
from jobs.providers.json_body import as_mapping, as_number, present

CURRENCY_CODES: Final[Mapping[str, str]] = {
    "USD": "840",
    "CAD": "124",
    "EUR": "978",
    "GBP": "826",
    "AUD": "036",
    "MXN": "484",
}
"""ISO 4217 alpha -> the numeric string Maast takes as `tran_currency`."""

CONTACT_KEYS: Final = (
    ("first_name", "first_name", 32),
    ("last_name", "last_name", 32),
    ("firm_name", "firm_name", 64),
    ("email", "email_address", 64),
    ("phone", "phone", 32),
)
ADDRESS_KEYS: Final = (
    ("line1", "address1", 128),
    ("line2", "address2", 128),
    ("city", "city", 64),
    ("state", "state", 64),
    ("zip", "zip", 10),
    ("zip4", "zip4", 4),
    ("country_code", "country_code", 3),
    ("country", "country", 128),
)
"""(neutral name, Maast name, max length) of a Contact, per Maast's Contact schema."""

_BODY_KEYS: Final = frozenset(
    {
        "customer_id",
        "invoice_number",
        "save_customer",
        "from_contact",
        "billing_contact",
        "profile_id",
        "tran_currency",
        "date_invoice",
        "line_items",
        "sales_tax",
        "payment_terms",
        "checkout_settings",
        "footer_note",
        "payment_terms_note",
    }
)
_CHECKOUT_KEYS: Final = (
    ("partial", "allow_partial_payments"),
    ("email_receipt", "email_receipt"),
    ("ach", "allow_ach_payment"),
)


def request_from_invoice(invoice: Invoice) -> dict[str, object]:
    """Maast's create body for `invoice`; fields that are `None` are left out.

    Money stays `Decimal` (send it with `json_body.dumps`); quantities are ints when
    integral. `tran_currency` is always sent, so an account whose default
    profile bills in another currency cannot bill ours wrongly.
    """
    billing = _contact_body(invoice.customer)
    checkout = present({m: getattr(invoice.payment, n) for n, m in _CHECKOUT_KEYS})
    extras = invoice.maast
    body: dict[str, object] = {
        "customer_id": invoice.customer.id,
        "invoice_number": invoice.number,
        "save_customer": extras.save_customer,
        "from_contact": _contact_body(extras.from_contact) if extras.from_contact else None,
        "billing_contact": billing or None,
        "profile_id": extras.profile_id,
        "tran_currency": CURRENCY_CODES.get(invoice.currency, invoice.currency),
        "date_invoice": render_date(invoice.invoice_date) if invoice.invoice_date else None,
        "line_items": [
            {"description": line.description, "quantity": as_number(line.quantity)}
            | {"unit_cost": line.unit_price}
            for line in invoice.lines
        ],
        "sales_tax": (
            {"type": invoice.tax.kind.upper(), "value": invoice.tax.value} if invoice.tax else None
        ),
        "payment_terms": _terms_body(invoice),
        "checkout_settings": checkout or None,
        "footer_note": invoice.notes.footer,
        "payment_terms_note": invoice.notes.terms,
    }
    return present(body)


def invoice_from_request(body: Mapping[str, object]) -> Invoice:
    """The neutral invoice a Maast create body describes (inverse of `request_from_invoice`).

    A body without `tran_currency` is taken as USD.

    Raises:
        ValueError: unknown fields or malformed parts (pydantic's `ValidationError`
            is a `ValueError` too).
    """
    unknown = sorted(set(body) - _BODY_KEYS)
    if unknown:
        raise ValueError(f"not Maast create fields: {', '.join(unknown)}")
    checkout = as_mapping(body.get("checkout_settings"), "checkout_settings")
    fields: dict[str, object] = {
        "number": body.get("invoice_number"),
        "customer": {"id": body.get("customer_id")}
        | _contact_from(as_mapping(body.get("billing_contact"), "billing_contact")),
        "lines": [_line_from(as_mapping(item, "line_items[]")) for item in _items(body)],
        "currency": _currency_from(body.get("tran_currency")),
        "tax": _tax_from(body.get("sales_tax")),
        "invoice_date": body.get("date_invoice"),
        "terms": _terms_from(body.get("payment_terms")),
        "notes": {"footer": body.get("footer_note"), "terms": body.get("payment_terms_note")},
        "payment": {n: checkout.get(m) for n, m in _CHECKOUT_KEYS},
        "maast": {
            "profile_id": body.get("profile_id"),
            "save_customer": body.get("save_customer"),
            "from_contact": _from_contact(body.get("from_contact")),
        },
    }
    return Invoice.model_validate(present(fields))


def render_date(value: date | datetime) -> str:
    """Maast's date text: `YYYY-MM-DD`, or a timestamp as the guide sends one
    (`2025-01-01T00:00:00.000Z`; another offset as `+HH:MM`, none when naive)."""
    if not isinstance(value, datetime):
        return value.isoformat()
    text = value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}"
    offset = value.utcoffset()
    if offset is None:
        return text
    if offset == timedelta(0):
        return text + "Z"
    zone = value.strftime("%z")
    return f"{text}{zone[:3]}:{zone[3:5]}"


def _contact_body(contact: Contact) -> dict[str, object]:
    body = {maast: getattr(contact, name) for name, maast, _ in CONTACT_KEYS}
    if contact.address is not None:
        body |= {maast: getattr(contact.address, name) for name, maast, _ in ADDRESS_KEYS}
    return present(body)


def _contact_from(body: Mapping[str, object]) -> dict[str, object]:
    fields: dict[str, object] = {name: body.get(maast) for name, maast, _ in CONTACT_KEYS}
    address = present({name: body.get(maast) for name, maast, _ in ADDRESS_KEYS})
    known = {maast for _, maast, _ in CONTACT_KEYS + ADDRESS_KEYS}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"not Maast contact fields: {', '.join(unknown)}")
    return present(fields | {"address": address or None})


def _from_contact(value: object) -> dict[str, object] | None:
    return None if value is None else _contact_from(as_mapping(value, "from_contact"))


def _terms_body(invoice: Invoice) -> dict[str, object] | None:
    terms = invoice.terms
    if terms is None:
        return None
    if terms.kind == "days":
        return {"type": "DAYS", "value": str(terms.days)}
    return {"type": "DATE", "value": terms.due_date.isoformat() if terms.due_date else None}


def _terms_from(value: object) -> dict[str, object] | None:
    if value is None:
        return None
    terms = as_mapping(value, "payment_terms")
    kind = str(terms.get("type", "DAYS")).upper()
    if kind == "DAYS":
        return {"kind": "days", "days": terms.get("value")}
    if kind == "DATE":
        return {"kind": "date", "due_date": terms.get("value")}
    raise ValueError(f"payment_terms.type {kind!r} is not DAYS or DATE")


def _tax_from(value: object) -> dict[str, object] | None:
    if value is None:
        return None
    tax = as_mapping(value, "sales_tax")
    return {"kind": str(tax.get("type", "")).lower(), "value": tax.get("value")}


def _line_from(item: Mapping[str, object]) -> dict[str, object]:
    unknown = sorted(set(item) - {"description", "quantity", "unit_cost"})
    if unknown:
        raise ValueError(f"not Maast line item fields: {', '.join(unknown)}")
    return {
        "description": item.get("description"),
        "quantity": item.get("quantity"),
        "unit_price": item.get("unit_cost"),
    }


def _currency_from(value: object) -> str:
    if value is None:
        return "USD"
    for alpha, numeric in CURRENCY_CODES.items():
        if str(value) == numeric:
            return alpha
    raise ValueError(f"tran_currency {value!r} is not a currency invoicer knows")


def _items(body: Mapping[str, object]) -> list[object]:
    items = body.get("line_items")
    if not isinstance(items, list):
        raise ValueError("line_items must be a list")
    return items


__all__ = [
    "ADDRESS_KEYS",
    "CONTACT_KEYS",
    "CURRENCY_CODES",
    "invoice_from_request",
    "render_date",
    "request_from_invoice",
]
