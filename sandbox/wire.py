"""The sandbox's HTTP vocabulary: a parsed request, a reply, JSON with Decimal.

Provider handlers take a `Request` and return a `Reply`; only `app.py` speaks
ASGI. JSON is parsed with `parse_float=Decimal` and Decimals are written back
as JSON numbers with their exact digits, so money never passes through float.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal
from urllib.parse import parse_qsl

JSON_HEADERS = [(b"content-type", b"application/json")]

_MARK = "\x00dec:"
_NUMBER = re.compile(r'"\\u0000dec:([-+0-9.eE]+)\\u0000dec:"')


class BadJson(ValueError):
    """The request body is not the JSON object the endpoint needs."""


@dataclass(slots=True)
class Request:
    """One provider request, already read in full."""

    method: str
    path: str
    query: bytes
    headers: dict[bytes, bytes]
    body: bytes
    client_ip: str

    def params(self) -> list[tuple[str, str]]:
        """Query parameters in order, repeated names kept."""
        return parse_qsl(self.query.decode("latin-1"), keep_blank_values=True)

    def json_object(self) -> dict[str, object]:
        """The body as a JSON object (empty body: `{}`).

        Raises:
            BadJson: not JSON, or not an object.
        """
        if not self.body.strip():
            return {}
        try:
            value = json.loads(self.body, parse_float=Decimal, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadJson(f"body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise BadJson("body must be a JSON object")
        return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")


Action = Literal["send", "hold", "drop", "late"]
"""`late`: answered normally, after a late commit (counted apart in the stats)."""


@dataclass(slots=True)
class Reply:
    """What to answer, and how (normally, after a hold, or not at all)."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: JSON_HEADERS)
    committed: bool = False
    """The handler changed provider state (an invoice was created or sent)."""
    key: str | None = None
    """The invoice number / reference this request was about, for fault events."""
    action: Action = "send"
    hold_s: float = 0.0
    drop_mode: Literal["close", "head"] = "close"


def reply(
    status: int,
    doc: object,
    *,
    committed: bool = False,
    key: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Reply:
    """A JSON reply of `doc`."""
    return Reply(status, encode(doc), headers or JSON_HEADERS, committed=committed, key=key)


def encode(doc: object) -> bytes:
    """JSON bytes of `doc`; Decimals become numbers with their exact digits."""
    text = json.dumps(_mark(doc), separators=(",", ":"), ensure_ascii=False)
    return _NUMBER.sub(r"\1", text).encode()


def _mark(value: object) -> object:
    # json cannot emit a Decimal as a number; wrap its digits in a marker the
    # regex in `encode` turns back into a bare number after dumping.
    if isinstance(value, dict):
        return {k: _mark(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mark(v) for v in value]
    if isinstance(value, Decimal):
        return f"{_MARK}{value}{_MARK}"
    return value


def stax_timestamp(epoch_s: float) -> str:
    """Stax's `YYYY-MM-DD HH:MM:SS` (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_s))


def maast_timestamp(epoch_s: float) -> str:
    """Maast's `db_timestamp` form, `yyyy-MM-ddTHH:mm:ss.SSS-ZZZZ` (UTC)."""
    millis = int(epoch_s * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s)) + f".{millis:03d}-0000"


def header(request: Request, name: bytes) -> str:
    """A request header's value ('' when absent)."""
    return request.headers.get(name, b"").decode("latin-1")
