"""Request and response bodies: exact-Decimal JSON and the value helpers bodies use.

Money never passes through a float: `dumps` writes a `Decimal` as its exact
text and `loads` reads fractions back as `Decimal`s. The helpers read the
loosely typed values providers answer with (`as_decimal`, `as_mapping`) and
shape the values we send (`present`, `as_number`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal

import httpx2 as httpx

JsonBody = Mapping[str, object]


def dumps(value: object) -> str:
    """Compact JSON with `Decimal` written as its exact text (never via float)."""
    parts: list[str] = []
    _encode(value, parts.append)
    return "".join(parts)


# The C string encoder behind `json.dumps(..., ensure_ascii=False)`: one call
# per string instead of a whole `json.dumps` (a body has ~60 values).
_encode_str: Callable[[str], str] = json.encoder.encode_basestring


_CONSTANTS: dict[object, str] = {None: "null", True: "true", False: "false"}


def _encode(value: object, out: Callable[[str], None]) -> None:
    # Most frequent kinds first: this runs for every value of every body.
    if isinstance(value, str):
        out(_encode_str(value))
    elif isinstance(value, Decimal):
        out(_decimal_text(value))
    elif isinstance(value, Mapping):
        _encode_mapping(value, out)
    elif value is None or isinstance(value, bool):
        out(_CONSTANTS[value])
    elif isinstance(value, int):
        out(int.__repr__(value))
    elif isinstance(value, list | tuple):
        _encode_items(value, out)
    elif isinstance(value, float):
        out(json.dumps(value))
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"cannot send {value} as a JSON number")
    return format(value, "f")


def _encode_mapping(value: Mapping[object, object], out: Callable[[str], None]) -> None:
    out("{")
    first = True
    for key, item in value.items():
        if not first:
            out(",")
        first = False
        out(_encode_str(str(key)))
        out(":")
        _encode(item, out)
    out("}")


def _encode_items(value: list[object] | tuple[object, ...], out: Callable[[str], None]) -> None:
    out("[")
    for index, item in enumerate(value):
        if index:
            out(",")
        _encode(item, out)
    out("]")


def loads(text: str | bytes) -> object:
    """Parse JSON with numbers that have a fraction as exact `Decimal`s."""
    return json.loads(text, parse_float=Decimal)


def body_of(response: httpx.Response) -> object:
    """The response's JSON, or `None` for an empty or non-JSON body (an HTML 502 page)."""
    try:
        return loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError):
        return None


def as_decimal(value: object) -> Decimal | None:
    """A money value that may come as a number or a string ("2.00")."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal | int | str):
        try:
            return Decimal(str(value).strip())
        except ArithmeticError:
            return None
    return None


def present(values: Mapping[str, object]) -> dict[str, object]:
    """`values` without the `None`s: unset fields are left out of bodies."""
    return {k: v for k, v in values.items() if v is not None}


def as_mapping(value: object, where: str) -> Mapping[str, object]:
    """A JSON object from a body (`{}` for `None`).

    Raises:
        ValueError: `value` is not an object; `where` names it.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be an object")
    return value


def as_number(value: Decimal) -> int | Decimal:
    """A quantity as JSON wants it: an int when integral."""
    return int(value) if value == value.to_integral_value() else value
