"""How a provider's answer, or the lack of one, becomes an `InvoiceError`.

Every error a provider client raises is built here: from a transport failure
(`map_transport_errors`, the one place httpx and aiohttp errors are
translated), from an HTTP answer (a provider's error table of `Row`s,
`make_error`, `Retry-After`, field errors in whatever shape they come), or
from our own local checks (`refuse_problems`). Nothing here knows Maast or
Stax field names, and nothing retries: retry policy is the worker's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

import aiohttp
import httpx2 as httpx

from jobs.errors import (
    ConfigurationError,
    FieldError,
    InvoiceError,
    InvoiceInvalid,
    InvoiceRejected,
    OutcomeUnknown,
    ProviderUnavailable,
    ProviderUnreachable,
    RateLimited,
)

DEFAULT_RETRY_AFTER_S = 60.0
"""Wait this long after a 429 that names no delay."""

Operation = Literal["create", "find", "detail", "send", "void"]
"""What a request was for: a 404 means a wrong base URL for some, an unknown id for others."""


# --- transport errors -------------------------------------------------------

_NEVER_SENT_AIOHTTP = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_NEVER_SENT_HTTPX = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _aiohttp_cause(exc: BaseException) -> aiohttp.ClientError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, aiohttp.ClientError):
            return seen
        seen = seen.__cause__
    return None


def never_sent(exc: BaseException) -> bool:
    """True when `exc` proves the request never reached the provider.

    httpx_aiohttp maps every `aiohttp.ClientConnectionError` (including a
    server dropping the connection after reading our request) to
    `ConnectTimeout`, so the original aiohttp error decides when there is one.
    Anything not known to be "never sent" is treated as "maybe sent".
    """
    cause = _aiohttp_cause(exc)
    if cause is not None:
        return isinstance(cause, _NEVER_SENT_AIOHTTP)
    return isinstance(exc, _NEVER_SENT_HTTPX)


def unreachable(exc: BaseException) -> bool:
    """True when no connection to the provider could be made at all (refused,
    no such host, connect timeout); a pool timeout is our own congestion."""
    cause = _aiohttp_cause(exc)
    if cause is not None:
        return isinstance(cause, _NEVER_SENT_AIOHTTP)
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def transport_error(exc: Exception) -> InvoiceError:
    """The `InvoiceError` for a transport failure (see `map_transport_errors`)."""
    # Name the original aiohttp error: httpx_aiohttp's class can mislead.
    shown: BaseException = _aiohttp_cause(exc) or exc
    detail = f"{type(shown).__name__}: {shown}" if str(shown) else type(shown).__name__
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ConfigurationError(f"bad provider URL ({detail})", setting="base_url")
    if unreachable(exc):
        return ProviderUnreachable(f"no connection ({detail})")
    if never_sent(exc):
        return ProviderUnavailable(f"request not sent ({detail})")
    # A lookup is cheap, a duplicate invoice is not: when unsure, unknown.
    return OutcomeUnknown(f"request may have reached the provider ({detail})")


@contextmanager
def map_transport_errors() -> Iterator[None]:
    """Translate transport failures, once: no connection -> `ProviderUnreachable`;
    otherwise never sent -> `ProviderUnavailable`;
    maybe sent (read timeout, dropped connection, write or protocol error) ->
    `OutcomeUnknown`; a malformed base URL -> `ConfigurationError`.
    """
    try:
        yield
    except (httpx.RequestError, httpx.InvalidURL, aiohttp.ClientError) as exc:
        raise transport_error(exc) from exc


# --- HTTP answers -----------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of a provider's error table: (status, body code) -> error class."""

    status: int
    code: int | None
    error: type[InvoiceError]
    why: str


def lookup(rows: Sequence[Row], status: int, code: int | None) -> type[InvoiceError]:
    """The error class for `status` and `code`: an exact row, a status-only row,
    then the fallbacks (other 4xx rejected, anything else unknown)."""
    for row in rows:
        if row.status == status and row.code == code:
            return row.error
    for row in rows:
        if row.status == status and row.code is None:
            return row.error
    if 400 <= status < 500:
        return InvoiceRejected
    return OutcomeUnknown


def make_error(
    error: type[InvoiceError],
    message: str,
    *,
    status: int,
    code: str | None,
    field_errors: tuple[FieldError, ...],
    headers: httpx.Headers,
) -> InvoiceError:
    """Build `error`, giving `RateLimited` its delay from `Retry-After`."""
    if issubclass(error, RateLimited):
        return error(message, retry_after_s=retry_after_s(headers), status=status)
    return error(message, status=status, code=code, field_errors=field_errors)


def retry_after_s(headers: httpx.Headers, default_s: float = DEFAULT_RETRY_AFTER_S) -> float:
    """`Retry-After` as seconds (delta-seconds or an HTTP-date), else `default_s`."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return default_s
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default_s
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\[\]]*$")


def field_errors_from(data: object, default_message: str = "failed validation") -> list[FieldError]:
    """Field errors from whatever shape a provider put them in.

    Accepts a dict field -> message(s), a list of `{field, message}` objects
    (or of field-keyed dicts), and a list of strings: a bare identifier is a
    field name (Maast lists failing fields), anything else a message.
    """
    if isinstance(data, Mapping):
        if "field" in data and ("message" in data or "msg" in data):
            return [FieldError(str(data["field"]), str(data.get("message", data.get("msg"))))]
        errors: list[FieldError] = []
        for name, messages in data.items():
            items = messages if isinstance(messages, list) else [messages]
            errors.extend(FieldError(str(name), str(m)) for m in items if m is not None)
        return errors
    if isinstance(data, list):
        found: list[FieldError] = []
        for item in data:
            if isinstance(item, str):
                is_name = bool(_FIELD_NAME.match(item))
                found.append(FieldError(item, default_message) if is_name else FieldError("", item))
            else:
                found.extend(field_errors_from(item, default_message))
        return found
    return []


# --- our own checks -----------------------------------------------------------


def refuse_problems(invoice_number: str, problems: Sequence[FieldError], provider: str) -> None:
    """Raise `InvoiceInvalid` listing every problem, if there is any.

    Raises:
        InvoiceInvalid: one `FieldError` per problem.
    """
    if problems:
        raise InvoiceInvalid(
            f"invoice {invoice_number} is not valid for {provider}", field_errors=tuple(problems)
        )
