"""Maast's validation rules for a create-invoice body (docs/sandbox.md, What it simulates).

Pure functions: a parsed JSON body in, a list of `Problem`s (field, message)
and the typed values the handler needs out. No state: whether the customer
exists or the number is a duplicate is the handler's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

INVOICE_NUMBER = re.compile(r"^[A-Za-z0-9_-]{1,25}$")
_NUMERIC3 = re.compile(r"^[0-9]{3}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")

# Contact field -> max length ([Qualpay OpenAPI] Contact, in docs/providers.md).
_CONTACT_LENGTHS = {
    "first_name": 32,
    "last_name": 32,
    "firm_name": 64,
    "email_address": 64,
    "phone": 32,
    "address1": 128,
    "address2": 128,
    "city": 64,
    "state": 64,
    "zip": 10,
    "zip4": 4,
    "country_code": 3,
    "country": 128,
}
_REQUIRED_CONTACT = {
    "billing_contact": ("email_address", "first_name", "last_name"),
    "from_contact": ("email_address", "firm_name", "phone"),
}
_TOP_LENGTHS = {"profile_id": 20, "footer_note": 750, "payment_terms_note": 500}


@dataclass(frozen=True)
class Problem:
    """One refused field: Maast's `data` entry of a code-2 response."""

    field: str
    message: str


@dataclass
class MaastDraft:
    """The typed values of a valid body that the handler computes with."""

    customer_id: str = ""
    invoice_number: str = ""
    lines: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    tax_kind: str | None = None
    tax_value: Decimal | None = None
    invoice_date: date | None = None
    terms_kind: str = "DAYS"
    terms_value: str | None = None
    save_customer: bool = False
    problems: list[Problem] = field(default_factory=list)

    def refuse(self, where: str, message: str) -> None:
        """Record a problem with `where`."""
        self.problems.append(Problem(where, f"{where} {message}"))


def number(value: object) -> Decimal | None:
    """A JSON number as a finite Decimal; None for anything else (bools too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal) and value.is_finite():
        return value
    return None


def decimals_at_most(value: Decimal, places: int) -> bool:
    """Whether `value` has at most `places` significant decimal places."""
    exponent = value.normalize().as_tuple().exponent
    return isinstance(exponent, int) and exponent >= -places


def check_create(body: dict[str, object]) -> MaastDraft:
    """Validate a create-invoice body; `draft.problems` empty means valid."""
    draft = MaastDraft()
    draft.customer_id = _text(draft, body, "customer_id", 32, required=True)
    draft.invoice_number = _text(draft, body, "invoice_number", 25, required=True)
    if draft.invoice_number and not INVOICE_NUMBER.match(draft.invoice_number):
        draft.refuse("invoice_number", "may contain only letters, digits, '-' and '_'")
    for name, limit in _TOP_LENGTHS.items():
        _text(draft, body, name, limit)
    _check_currency(draft, body.get("tran_currency"))
    _check_save_customer(draft, body)
    for name in _REQUIRED_CONTACT:
        _check_contact(draft, body.get(name), name)
    _check_lines(draft, body.get("line_items"))
    _check_tax(draft, body.get("sales_tax"))
    draft.invoice_date = _check_date(draft, body.get("date_invoice"))
    _check_terms(draft, body.get("payment_terms"))
    _check_flags(draft, body.get("checkout_settings"))
    return draft


def _text(
    draft: MaastDraft,
    body: dict[str, object],
    name: str,
    limit: int,
    *,
    required: bool = False,
    prefix: str = "",
) -> str:
    where = prefix + name
    value = body.get(name)
    if value is None or value == "":
        if required:
            draft.refuse(where, "is required")
        return ""
    if not isinstance(value, str):
        draft.refuse(where, "must be a string")
        return ""
    if len(value) > limit:
        draft.refuse(where, f"must be at most {limit} characters")
    return value


def _check_currency(draft: MaastDraft, value: object) -> None:
    if value is not None and not (isinstance(value, str) and _NUMERIC3.match(value)):
        draft.refuse("tran_currency", 'must be a 3-digit ISO 4217 numeric code, e.g. "840"')


def _check_save_customer(draft: MaastDraft, body: dict[str, object]) -> None:
    value = body.get("save_customer", False)
    if not isinstance(value, bool):
        draft.refuse("save_customer", "must be true or false")
        return
    draft.save_customer = value
    if value and body.get("billing_contact") is None:
        draft.refuse("billing_contact", "is required when save_customer is true")


def _check_contact(draft: MaastDraft, value: object, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        draft.refuse(name, "must be an object")
        return
    required = _REQUIRED_CONTACT[name]
    for part, limit in _CONTACT_LENGTHS.items():
        _text(draft, value, part, limit, required=part in required, prefix=f"{name}.")


def _check_lines(draft: MaastDraft, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        draft.refuse("line_items", "must be a list")
        return
    for i, item in enumerate(value):
        where = f"line_items[{i}]"
        if not isinstance(item, dict):
            draft.refuse(where, "must be an object")
            continue
        quantity, unit_cost = _check_line(draft, item, where)
        if quantity is not None and unit_cost is not None:
            draft.lines.append((quantity, unit_cost))


def _check_line(
    draft: MaastDraft, item: dict[str, object], where: str
) -> tuple[Decimal | None, Decimal | None]:
    description = item.get("description")
    if not isinstance(description, str) or not description.strip():
        draft.refuse(f"{where}.description", "is required")
    quantity = number(item.get("quantity"))
    if quantity is None or quantity != quantity.to_integral_value() or not 0 <= quantity <= 999:
        draft.refuse(f"{where}.quantity", "must be a whole number from 0 to 999")
        quantity = None
    unit_cost = number(item.get("unit_cost"))
    if unit_cost is None or not 0 <= unit_cost < 10**6 or not decimals_at_most(unit_cost, 2):
        draft.refuse(f"{where}.unit_cost", "must be a number from 0 with at most 2 decimals")
        unit_cost = None
    return quantity, unit_cost


def _check_tax(draft: MaastDraft, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or value.get("type") not in ("RATE", "AMOUNT"):
        draft.refuse("sales_tax.type", "must be RATE or AMOUNT")
        return
    amount = number(value.get("value"))
    if amount is None or not 0 <= amount < 10**7 or not decimals_at_most(amount, 5):
        draft.refuse("sales_tax.value", "must be a number from 0 with at most 5 decimals")
        return
    draft.tax_kind, draft.tax_value = str(value["type"]), amount


def _check_date(draft: MaastDraft, value: object, where: str = "date_invoice") -> date | None:
    # "YYYY-MM-DD", or a full ISO timestamp starting with it (the official
    # guide sends "2025-01-01T00:00:00.000Z").
    if value is None:
        return None
    try:
        if not isinstance(value, str) or not _DATE.match(value):
            raise ValueError(value)
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value).date()
    except ValueError:
        draft.refuse(where, "must be a date YYYY-MM-DD")
        return None


def _check_terms(draft: MaastDraft, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or value.get("type", "DAYS") not in ("DAYS", "DATE"):
        draft.refuse("payment_terms.type", "must be DAYS or DATE")
        return
    draft.terms_kind = str(value.get("type", "DAYS"))
    raw = value.get("value")
    if draft.terms_kind == "DAYS":
        if not (isinstance(raw, str) and raw.isdigit()) and not (
            isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0
        ):
            draft.refuse("payment_terms.value", "must be a number of days")
            return
    elif _check_date(draft, raw, "payment_terms.value") is None:
        return
    draft.terms_value = str(raw)


def _check_flags(draft: MaastDraft, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        draft.refuse("checkout_settings", "must be an object")
        return
    for name, flag in value.items():
        if not isinstance(flag, bool):
            draft.refuse(f"checkout_settings.{name}", "must be true or false")
