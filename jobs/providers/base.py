"""What every provider client shares: config, the HTTP client, JSON, error mapping.

This module owns the one place transport failures become `InvoiceError`s
(`map_transport_errors`), the error-table lookup both providers use, exact
Decimal JSON encoding and the `HttpProvider` base that sends one request and
decodes its body. It knows nothing about Maast or Stax field names and never
retries, sleeps or touches Redis: retry policy is the worker's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Literal

import aiohttp
import httpx2 as httpx
from httpx_aiohttp.httpx2 import AiohttpTransport

from jobs.errors import (
    ConfigurationError,
    FieldError,
    InvoiceError,
    InvoiceInvalid,
    InvoiceRejected,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
)
from jobs.models import Invoice
from jobs.ports import PreparedRequest

DEFAULT_RETRY_AFTER_S = 60.0
"""Wait this long after a 429 that names no delay."""

Operation = Literal["create", "find", "detail", "send"]
"""What a request was for: a 404 means a wrong base URL for some, an unknown id for others."""

JsonBody = Mapping[str, object]


@dataclass(frozen=True, repr=False)
class ProviderConfig:
    """How to reach one provider account; the key never shows in `repr`."""

    base_url: str
    api_key: str = field(repr=False)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_connections: int = 100

    def __repr__(self) -> str:
        return (
            f"ProviderConfig(base_url={self.base_url!r}, api_key='***', "
            f"connect_timeout_s={self.connect_timeout_s}, read_timeout_s={self.read_timeout_s}, "
            f"max_connections={self.max_connections})"
        )


def build_client(
    config: ProviderConfig, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one shared client of a provider account, with explicit timeouts.

    Uses the aiohttp transport (far less CPU per request under concurrency)
    unless `transport` is given, e.g. `httpx.MockTransport` in tests.
    """
    timeout = httpx.Timeout(
        connect=config.connect_timeout_s,
        read=config.read_timeout_s,
        write=config.read_timeout_s,
        # Waiting for a free pooled connection means waiting for other requests
        # to finish reading, so it gets the read budget, not the connect one.
        pool=config.read_timeout_s,
    )
    limits = _limits(config)
    return httpx.AsyncClient(
        base_url=config.base_url,
        timeout=timeout,
        limits=limits,
        transport=transport if transport is not None else AiohttpTransport(limits=limits),
        # worker/settings.py is the only reader of the environment: no proxy
        # or certificate settings may sneak in from it here.
        trust_env=False,
        follow_redirects=False,
    )


def _limits(config: ProviderConfig) -> httpx.Limits:
    return httpx.Limits(
        max_connections=config.max_connections,
        max_keepalive_connections=config.max_connections,
    )


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


def transport_error(exc: Exception) -> InvoiceError:
    """The `InvoiceError` for a transport failure (see `map_transport_errors`)."""
    # Name the original aiohttp error: httpx_aiohttp's class can mislead.
    shown: BaseException = _aiohttp_cause(exc) or exc
    detail = f"{type(shown).__name__}: {shown}" if str(shown) else type(shown).__name__
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ConfigurationError(f"bad provider URL ({detail})")
    if never_sent(exc):
        return ProviderUnavailable(f"request not sent ({detail})")
    # A lookup is cheap, a duplicate invoice is not: when unsure, unknown.
    return OutcomeUnknown(f"request may have reached the provider ({detail})")


@contextmanager
def map_transport_errors() -> Iterator[None]:
    """Translate transport failures, once: never sent -> `ProviderUnavailable`;
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


def refuse_problems(invoice_number: str, problems: Sequence[FieldError], provider: str) -> None:
    """Raise `InvoiceInvalid` listing every problem, if there is any.

    Raises:
        InvoiceInvalid: one `FieldError` per problem.
    """
    if problems:
        raise InvoiceInvalid(
            f"invoice {invoice_number} is not valid for {provider}", field_errors=tuple(problems)
        )


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


# --- JSON -------------------------------------------------------------------


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


# --- the client base ---------------------------------------------------------


class HttpProvider:
    """Owns one shared HTTP client and sends requests through the error mapper.

    Requests go straight to the client's transport: the client's own layers
    (auth and redirect flows, cookies, event hooks, URL and header merging)
    do nothing for us (no auth object, redirects off, no cookies) and cost
    about as much CPU as the transport itself. The client still owns the
    configuration (timeouts, default headers) and the transport's lifetime.
    """

    def __init__(
        self, config: ProviderConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self._transport = transport or AiohttpTransport(limits=_limits(config))
        self._client = build_client(config, self._transport)
        self._timeout = self._client.timeout.as_dict()
        self._base_url = config.base_url.rstrip("/")
        self._sent_headers: httpx.Headers | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    name: str
    """The provider's name in messages ("Maast")."""
    create_path: str
    """Where invoices are created (and, for both providers, listed)."""

    def _authorization(self, *, redacted: bool) -> str:
        """The `Authorization` header; the key shown as `***` when `redacted`."""
        raise NotImplementedError

    def _problems(self, invoice: Invoice) -> Sequence[FieldError]:
        """What the provider is known to reject in `invoice` (local rules)."""
        raise NotImplementedError

    def _create_body(self, invoice: Invoice) -> dict[str, object]:
        """The create request's JSON body."""
        raise NotImplementedError

    def _headers(self, *, redacted: bool = False) -> dict[str, str]:
        return {
            "Authorization": self._authorization(redacted=redacted),
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

    def validate(self, invoice: Invoice) -> None:
        """Refuse locally what the provider would reject (all problems at once).

        A refused request is worse than a wasted one: Stax blocks the IP
        after ten in a minute.

        Raises:
            InvoiceInvalid: one `FieldError` per problem.
        """
        refuse_problems(invoice.number, self._problems(invoice), self.name)

    def prepare_create(self, invoice: Invoice) -> PreparedRequest:
        """The exact create request, with the key shown as `***`."""
        return PreparedRequest(
            method="POST",
            url=self._url(self.create_path),
            headers=self._headers(redacted=True),
            json=self._create_body(invoice),
        )

    def _url(self, path: str) -> str:
        return self._base_url + path

    def _wire_headers(self) -> httpx.Headers:
        # The client's defaults (User-Agent, Accept-Encoding...) under ours,
        # as `client.request` would merge them; built once (the key is fixed).
        if self._sent_headers is None:
            headers = httpx.Headers(self._client.headers)
            headers.update(self._headers())  # case-insensitive: ours replace the defaults
            self._sent_headers = headers
        return self._sent_headers

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: Mapping[str, str | int | list[str]] | None = None,
    ) -> httpx.Response:
        """Send one request; transport failures come out as `InvoiceError`s."""
        content = dumps(body).encode() if body is not None else None
        request = httpx.Request(
            method,
            self._url(path),
            params=params,
            content=content,
            headers=self._wire_headers(),
            extensions={"timeout": self._timeout},
        )
        with map_transport_errors():
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()  # closes the response stream at its end
            except BaseException:
                await response.aclose()
                raise
        return response

    async def aclose(self) -> None:
        """Close the shared HTTP client."""
        await self._client.aclose()
