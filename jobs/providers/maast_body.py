"""The Maast create body, both ways, and what Maast refuses in it.

`request_from_invoice` turns the neutral `Invoice` into Maast's create body
(PROVIDERS.md 1.6) and `invoice_from_request` reads one back exactly (the
JSONL reader uses it); `invoice_problems` lists every local refusal. Pure
functions: no HTTP, no I/O. `jobs.providers.maast` re-exports them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Final

from jobs.errors import FieldError
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

_CONTACT_KEYS: Final = (
    ("first_name", "first_name", 32),
    ("last_name", "last_name", 32),
    ("firm_name", "firm_name", 64),
    ("email", "email_address", 64),
    ("phone", "phone", 32),
)
_ADDRESS_KEYS: Final = (
    ("line1", "address1", 128),
    ("line2", "address2", 128),
    ("city", "city", 64),
    ("state", "state", 64),
    ("zip", "zip", 10),
    ("zip4", "zip4", 4),
    ("country_code", "country_code", 3),
    ("country", "country", 128),
)
"""(neutral name, Maast name, max length) of a Contact (PROVIDERS.md 1.6)."""

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


def invoice_problems(invoice: Invoice) -> list[FieldError]:
    """Every reason Maast would refuse `invoice` (PROVIDERS.md 1.6, 1.9)."""
    problems: list[FieldError] = []
    if not _INVOICE_NUMBER.match(invoice.number):
        problems.append(FieldError("number", "Maast takes 1-25 letters, digits, '-' or '_'"))
    if len(invoice.customer.id) > 32:
        problems.append(FieldError("customer.id", "Maast takes at most 32 characters"))
    if invoice.currency not in CURRENCY_CODES:
        known = ", ".join(CURRENCY_CODES)
        problems.append(FieldError("currency", f"unsupported currency (known: {known})"))
    if invoice.maast.profile_id and len(invoice.maast.profile_id) > 20:
        problems.append(FieldError("maast.profile_id", "Maast takes at most 20 characters"))
    if invoice.funding:
        problems.append(FieldError("funding", "Maast has no split funding"))
    problems += _line_problems(invoice)
    problems += _tax_problems(invoice)
    problems += _text_problems(invoice)
    return problems


_INVOICE_NUMBER = re.compile(r"^[A-Za-z0-9_-]{1,25}$")
_MAX_UNIT_COST = Decimal(10) ** 8  # "8,2": 8 digits before the point, 2 after
_MAX_TAX_VALUE = Decimal(10) ** 7  # "7,5"


def _line_problems(invoice: Invoice) -> list[FieldError]:
    problems: list[FieldError] = []
    for i, line in enumerate(invoice.lines):
        q = line.quantity
        if q != q.to_integral_value() or not 1 <= q <= 999:
            problems.append(FieldError(f"lines[{i}].quantity", "Maast takes a whole 1..999"))
        if line.unit_price >= _MAX_UNIT_COST:
            problems.append(FieldError(f"lines[{i}].unit_price", "over 8 digits before the point"))
    return problems


def _tax_problems(invoice: Invoice) -> list[FieldError]:
    if invoice.tax is None:
        return []
    value = invoice.tax.value
    exponent = value.as_tuple().exponent
    if value >= _MAX_TAX_VALUE or (isinstance(exponent, int) and exponent < -5):
        return [FieldError("tax.value", "Maast takes up to 7 digits and 5 decimals")]
    return []


def _text_problems(invoice: Invoice) -> list[FieldError]:
    problems = _too_long("notes.footer", invoice.notes.footer, 750)
    problems += _too_long("notes.terms", invoice.notes.terms, 500)
    problems += _contact_problems("customer", invoice.customer)
    # A contact object that is sent must be complete (PROVIDERS.md 1.6), and
    # save_customer creates the vault customer from billing_contact.
    if _sends_contact(invoice.customer) or invoice.maast.save_customer:
        problems += _missing("customer", invoice.customer, _BILLING_REQUIRED)
    if invoice.maast.from_contact is not None:
        problems += _contact_problems("maast.from_contact", invoice.maast.from_contact)
        problems += _missing("maast.from_contact", invoice.maast.from_contact, _FROM_REQUIRED)
    return problems


_BILLING_REQUIRED: Final = ("first_name", "last_name", "email")
_FROM_REQUIRED: Final = ("firm_name", "phone", "email")


def _missing(where: str, contact: Contact, required: tuple[str, ...]) -> list[FieldError]:
    return [
        FieldError(f"{where}.{name}", "Maast requires it on this contact")
        for name in required
        if not getattr(contact, name)
    ]


def _contact_problems(where: str, contact: Contact) -> list[FieldError]:
    # Runs for every invoice enqueued: field names are only formatted for a problem.
    problems = [
        FieldError(f"{where}.{name}", f"Maast takes at most {limit} characters")
        for name, _, limit in _CONTACT_KEYS
        if (value := getattr(contact, name)) is not None and len(value) > limit
    ]
    address = contact.address
    if address is not None:
        problems += [
            FieldError(f"{where}.address.{name}", f"Maast takes at most {limit} characters")
            for name, _, limit in _ADDRESS_KEYS
            if (value := getattr(address, name)) is not None and len(value) > limit
        ]
    return problems


def _sends_contact(contact: Contact) -> bool:
    """Whether `_contact_body(contact)` is non-empty, without building it."""
    if any(getattr(contact, name) is not None for name, _, _ in _CONTACT_KEYS):
        return True
    address = contact.address
    return address is not None and any(
        getattr(address, name) is not None for name, _, _ in _ADDRESS_KEYS
    )


def _too_long(where: str, value: str | None, limit: int) -> list[FieldError]:
    if value is not None and len(value) > limit:
        return [FieldError(where, f"Maast takes at most {limit} characters")]
    return []


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
    body = {maast: getattr(contact, name) for name, maast, _ in _CONTACT_KEYS}
    if contact.address is not None:
        body |= {maast: getattr(contact.address, name) for name, maast, _ in _ADDRESS_KEYS}
    return present(body)


def _contact_from(body: Mapping[str, object]) -> dict[str, object]:
    fields: dict[str, object] = {name: body.get(maast) for name, maast, _ in _CONTACT_KEYS}
    address = present({name: body.get(maast) for name, maast, _ in _ADDRESS_KEYS})
    known = {maast for _, maast, _ in _CONTACT_KEYS + _ADDRESS_KEYS}
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
    "CURRENCY_CODES",
    "invoice_from_request",
    "invoice_problems",
    "render_date",
    "request_from_invoice",
]
