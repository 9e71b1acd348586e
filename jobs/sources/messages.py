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


_PLAIN: dict[str, str] = {
    "too_short": "needs at least {min_length} item(s), got {actual_length}",
    "too_long": "takes at most {max_length} item(s), got {actual_length}",
    "string_too_short": "needs at least {min_length} character(s)",
    "string_too_long": "takes at most {max_length} characters",
    "string_pattern_mismatch": "must match the pattern {pattern}",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "decimal_parsing": "is not a number",
    "decimal_type": "is not a number",
    "int_parsing": "is not a whole number",
    "bool_parsing": "is not true or false",
    "bool_type": "is not true or false",
    "date_type": "is not a date (YYYY-MM-DD)",
    "string_type": "must be text",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "list_type": "must be a list",
    "extra_forbidden": "is not a field of an invoice",
    "missing": "required",
}
"""Pydantic's phrasings ("List should have at least 1 item after validation")
in the plain words docs/input-formats.md documents; its own for the rest."""


def _plain(error: ErrorDetails) -> str:
    template = _PLAIN.get(error["type"])
    if template is not None:
        try:
            return template.format(**error.get("ctx", {}))
        except (KeyError, IndexError):
            pass
    message = error["msg"].removeprefix("Value error, ")
    return message.replace("Input should be ", "must be ", 1)


def _pydantic_message(error: ErrorDetails) -> str:
    message = _printable(_plain(error))
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
    last = kept[-1]
    more = RecordError(
        last.line, f"... and {rest} more problems", None, last.invoice_number, source=last.source
    )
    return [*kept, more]


def _totals_problem(invoice: Invoice) -> str | None:
    try:
        invoice.totals()
    except ArithmeticError:
        return "amounts are too large to compute a total"
    return None
