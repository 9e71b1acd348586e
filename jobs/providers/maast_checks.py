"""What Maast refuses in an invoice, checked locally before any request.

`invoice_problems` lists every reason at once (docs/providers.md, Maast:
Endpoints the code calls, which gives the limits and their sources): the
number's alphabet, field lengths, the currencies Maast bills in, its number
formats, and the contacts it requires complete. Pure functions: no HTTP.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

from jobs.errors import FieldError
from jobs.models import Contact, Invoice
from jobs.providers.maast_body import ADDRESS_KEYS, CONTACT_KEYS, CURRENCY_CODES


def invoice_problems(invoice: Invoice) -> list[FieldError]:
    """Every reason Maast would refuse `invoice`, all at once."""
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
    # Maast's Contact schema requires these fields on any contact object that
    # is sent, and save_customer creates the vault customer from billing_contact.
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
        for name, _, limit in CONTACT_KEYS
        if (value := getattr(contact, name)) is not None and len(value) > limit
    ]
    address = contact.address
    if address is not None:
        problems += [
            FieldError(f"{where}.address.{name}", f"Maast takes at most {limit} characters")
            for name, _, limit in ADDRESS_KEYS
            if (value := getattr(address, name)) is not None and len(value) > limit
        ]
    return problems


def _sends_contact(contact: Contact) -> bool:
    """Whether the body would carry a contact object for `contact`, without building it."""
    if any(getattr(contact, name) is not None for name, _, _ in CONTACT_KEYS):
        return True
    address = contact.address
    return address is not None and any(
        getattr(address, name) is not None for name, _, _ in ADDRESS_KEYS
    )


def _too_long(where: str, value: str | None, limit: int) -> list[FieldError]:
    if value is not None and len(value) > limit:
        return [FieldError(where, f"Maast takes at most {limit} characters")]
    return []


__all__ = ["invoice_problems"]
