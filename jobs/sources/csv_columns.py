"""CSV columns: the names accepted, where each goes in an `Invoice`, and header checks."""

from __future__ import annotations

import difflib
import re

from jobs.sources.messages import _show
from jobs.sources.records import SourceError

_INVOICE_PATHS: dict[str, tuple[str, ...]] = {
    "invoice_number": ("number",),
    "customer_id": ("customer", "id"),
    "customer_first_name": ("customer", "first_name"),
    "customer_last_name": ("customer", "last_name"),
    "customer_firm_name": ("customer", "firm_name"),
    "customer_email": ("customer", "email"),
    "customer_phone": ("customer", "phone"),
    "customer_address1": ("customer", "address", "line1"),
    "customer_address2": ("customer", "address", "line2"),
    "customer_city": ("customer", "address", "city"),
    "customer_state": ("customer", "address", "state"),
    "customer_zip": ("customer", "address", "zip"),
    "customer_zip4": ("customer", "address", "zip4"),
    "customer_country_code": ("customer", "address", "country_code"),
    "customer_country": ("customer", "address", "country"),
    "currency": ("currency",),
    "invoice_date": ("invoice_date",),
    "memo": ("notes", "memo"),
    "footer_note": ("notes", "footer"),
    "terms_note": ("notes", "terms"),
    "maast_profile_id": ("maast", "profile_id"),
    "stax_url": ("stax", "url"),
}
_BOOL_PATHS: dict[str, tuple[str, ...]] = {
    "allow_partial": ("payment", "partial"),
    "allow_ach": ("payment", "ach"),
    "allow_card": ("payment", "card"),
    "allow_tips": ("payment", "tips"),
    "email_receipt": ("payment", "email_receipt"),
    "send": ("send",),
}
_SPECIAL_COLUMNS = ("tax_rate", "tax_amount", "terms_days", "due_date", "funding")
_LINE_PATHS: dict[str, tuple[str, ...]] = {
    "item_name": ("name",),
    "description": ("description",),
    "quantity": ("quantity",),
    "unit_price": ("unit_price",),
}
_INVOICE_COLUMNS = (*_INVOICE_PATHS, *_BOOL_PATHS, *_SPECIAL_COLUMNS)
COLUMNS = (*_INVOICE_COLUMNS, *_LINE_PATHS)
"""Every CSV column, invoice-level first, then line-level."""
REQUIRED_COLUMNS = ("invoice_number", "customer_id", "description", "quantity", "unit_price")
_NUMBER_COLUMNS = ("quantity", "unit_price", "tax_rate", "tax_amount")
# Common names people use, for "did you mean" only; they are not accepted.
_ALIASES = {
    "qty": "quantity",
    "price": "unit_price",
    "amount": "unit_price",
    "customer": "customer_id",
    "number": "invoice_number",
    "invoice": "invoice_number",
    "email": "customer_email",
    "item": "item_name",
    "date": "invoice_date",
    "tax": "tax_rate",
}
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
# Plain decimals only: no thousands separators, exponents or NaN, so a money
# value means what it looks like.
_PLAIN_DECIMAL = re.compile(r"[+-]?\d{1,15}(\.\d{1,10})?")


def _normalize(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def _check_header(cells: list[str]) -> list[str]:
    """Normalized column names by position ('' for an unnamed column)."""
    names = [_normalize(cell) for cell in cells]
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name and name in seen:
            raise SourceError(
                f"column {_show(name)} appears twice (columns {seen[name]} and {position})"
            )
        seen[name] = position
    unknown = [name for name in names if name and name not in COLUMNS]
    if unknown:
        listed = ", ".join(_suggest(name) for name in unknown[:10])
        raise SourceError(f"unknown column(s): {listed}; see docs/input-formats.md")
    missing = [name for name in REQUIRED_COLUMNS if name not in seen]
    if missing:
        raise SourceError(f"missing required column(s): {', '.join(missing)}")
    return names


def _suggest(name: str) -> str:
    close = _ALIASES.get(name) or next(iter(difflib.get_close_matches(name, COLUMNS, n=1)), None)
    return f"{_show(name)} (did you mean {close!r}?)" if close else _show(name)
