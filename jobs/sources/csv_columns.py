"""CSV columns: the names accepted, where each goes in an `Invoice`, header checks,
and the `_Layout` a checked header implies for every row."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import itemgetter

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
_PLAIN_DECIMAL = re.compile(r"[+-]?[0-9]{1,15}(\.[0-9]{1,10})?")
"""A number as docs/input-formats.md allows it: ASCII digits (not `٣`, which
Python's `\\d` and `Decimal` would take), at most 15 before the point, 10 after."""
_DECIMAL_SHAPE = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")
"""A plain decimal of any length: one that is not `_PLAIN_DECIMAL` has too many digits."""


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


@dataclass(frozen=True)
class _Layout:
    """What a header implies for every row, worked out once per file rather than per row."""

    header: list[str]
    """Normalized column names by position ('' for an unnamed column)."""
    all_named: bool
    invoice_columns: tuple[str, ...]
    """The invoice-level columns the header has, in `_INVOICE_COLUMNS` order."""
    invoice_cells: Callable[[list[str]], tuple[str, ...]]
    """The raw invoice-level cells of a full-width row (as a tuple, to compare rows at once)."""
    invoice_parts: tuple[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], ...]
    """The `_INVOICE_PATHS` the header has, by parent: (parent keys, ((column, key), ...))."""
    bool_paths: tuple[tuple[str, tuple[str, ...]], ...]
    line_columns: tuple[tuple[str, str, bool], ...]
    """(column, line item key, is a number) of the `_LINE_PATHS` the header has."""

    @classmethod
    def of(cls, header: list[str]) -> _Layout:
        """The layout of a checked header."""
        present = set(header)
        positions = [header.index(column) for column in _INVOICE_COLUMNS if column in present]
        # Two positions at least (invoice_number and customer_id are required
        # columns), so the getter returns a tuple, never a bare cell.
        return cls(
            header=header,
            all_named=all(header),
            invoice_columns=tuple(c for c in _INVOICE_COLUMNS if c in present),
            invoice_cells=itemgetter(*positions),
            invoice_parts=_parts(column for column in _INVOICE_PATHS if column in present),
            bool_paths=tuple((c, path) for c, path in _BOOL_PATHS.items() if c in present),
            line_columns=tuple(
                (column, key, column in _NUMBER_COLUMNS)
                for column, (key,) in _LINE_PATHS.items()
                if column in present
            ),
        )


def _parts(
    columns: Iterable[str],
) -> tuple[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], ...]:
    """`_INVOICE_PATHS` of `columns` grouped by parent (("customer", "address"): ...)."""
    parts: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for column in columns:
        path = _INVOICE_PATHS[column]
        parts.setdefault(path[:-1], []).append((column, path[-1]))
    return tuple((parents, tuple(pairs)) for parents, pairs in parts.items())
