"""Rendering user data safely in error messages, and capping one record's errors."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal

from pydantic_core import ErrorDetails

from jobs.models import Invoice
from jobs.sources.records import MAX_ERRORS_PER_RECORD, RecordError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _show(value: object, limit: int = 40) -> str:
    """A short, printable, quoted rendering of user data for messages."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _label(number: str | None) -> str | None:
    """An invoice number safe to print, or a quoted rendering of it."""
    if number is None or not number:
        return None
    return number if number.isprintable() and len(number) <= 64 else _show(number)


def _json_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            path += f".{part}" if path else part
        else:
            path += f"[{_show(part)}]"
    return path


def _printable(text: str, limit: int = 500) -> str:
    """`text` made safe to log or print: no lone surrogates, bounded length."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "..."


def _pydantic_message(error: ErrorDetails) -> str:
    message = _printable(error["msg"].removeprefix("Value error, "))
    value = error.get("input")
    scalar = isinstance(value, str | int | Decimal) and not isinstance(value, bool)
    if scalar and error["type"] != "missing":
        message += f" (got {_show(value)})"
    return message


def _capped(errors: list[RecordError]) -> list[RecordError]:
    if len(errors) <= MAX_ERRORS_PER_RECORD:
        return errors
    kept = errors[:MAX_ERRORS_PER_RECORD]
    rest = len(errors) - len(kept)
    more = RecordError(
        kept[-1].line, f"... and {rest} more problems", None, kept[-1].invoice_number
    )
    return [*kept, more]


def _totals_problem(invoice: Invoice) -> str | None:
    try:
        invoice.totals()
    except ArithmeticError:
        return "amounts are too large to compute a total"
    return None
