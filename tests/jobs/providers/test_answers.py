"""Answer classification: Retry-After, field errors in every shape and, above
all, the mapping of transport failures to "never sent" or "maybe sent"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import httpx2 as httpx
import pytest

from jobs.errors import (
    ConfigurationError,
    FieldError,
    InvoiceError,
    OutcomeUnknown,
    ProviderUnavailable,
    ProviderUnreachable,
)
from jobs.providers.answers import (
    field_errors_from,
    map_transport_errors,
    retry_after_s,
    transport_error,
)

# --- HTTP answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected_s"),
    [("7", 7.0), ("0", 0.0), ("", 60.0), ("soon", 60.0), ("-3", 0.0)],
)
def test_retry_after_seconds(value: str, expected_s: float) -> None:
    assert retry_after_s(httpx.Headers({"Retry-After": value} if value else {})) == expected_s


def test_retry_after_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    headers = httpx.Headers({"Retry-After": format_datetime(when, usegmt=True)})
    assert 100 <= retry_after_s(headers) <= 121


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"total": ["The total field is required."]},
            [FieldError("total", "The total field is required.")],
        ),
        ({"a": "bad"}, [FieldError("a", "bad")]),
        ([{"field": "quantity", "message": "too big"}], [FieldError("quantity", "too big")]),
        (["invoice_number"], [FieldError("invoice_number", "failed validation")]),
        (
            ["A paid invoice can't be paid again."],
            [FieldError("", "A paid invoice can't be paid again.")],
        ),
        (
            [{"id": ["Invoice could not be found"]}],
            [FieldError("id", "Invoice could not be found")],
        ),
        (None, []),
        ("text", []),
    ],
)
def test_field_errors_from_every_shape(data: object, expected: list[FieldError]) -> None:
    assert field_errors_from(data) == expected


# --- transport errors without aiohttp (httpx classes) ------------------------------------

REQUEST = httpx.Request("POST", "https://x.test/invoice")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused", request=REQUEST), ProviderUnreachable),
        (httpx.ConnectTimeout("slow", request=REQUEST), ProviderUnreachable),
        (httpx.PoolTimeout("busy", request=REQUEST), ProviderUnavailable),
        (httpx.ReadTimeout("slow", request=REQUEST), OutcomeUnknown),
        (httpx.WriteTimeout("slow", request=REQUEST), OutcomeUnknown),
        (httpx.ReadError("reset", request=REQUEST), OutcomeUnknown),
        (httpx.WriteError("pipe", request=REQUEST), OutcomeUnknown),
        (httpx.RemoteProtocolError("eof", request=REQUEST), OutcomeUnknown),
        (httpx.TimeoutException("?", request=REQUEST), OutcomeUnknown),
        (httpx.UnsupportedProtocol("ftp", request=REQUEST), ConfigurationError),
    ],
)
def test_httpx_errors_are_classified(exc: Exception, expected: type[InvoiceError]) -> None:
    assert type(transport_error(exc)) is expected


def _wrapped(cause: Exception, as_: type[httpx.TransportError]) -> httpx.TransportError:
    # What httpx_aiohttp raises: its mapped class, with the aiohttp error as cause.
    try:
        raise as_(str(cause)) from cause
    except httpx.TransportError as exc:
        return exc


def _conn_key() -> aiohttp.client_reqrep.ConnectionKey:
    return aiohttp.client_reqrep.ConnectionKey("x.test", 443, True, True, None, None, None)


@pytest.mark.parametrize(
    ("cause", "as_", "expected"),
    [
        # httpx_aiohttp maps all of these to ConnectTimeout or TimeoutException:
        (aiohttp.ServerDisconnectedError(), httpx.ConnectTimeout, OutcomeUnknown),
        (aiohttp.ClientOSError(104, "reset"), httpx.ConnectTimeout, OutcomeUnknown),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout, OutcomeUnknown),
        (aiohttp.ClientPayloadError("cut"), httpx.ReadError, OutcomeUnknown),
        (aiohttp.ConnectionTimeoutError("pool"), httpx.TimeoutException, ProviderUnreachable),
        (
            aiohttp.ClientConnectorError(_conn_key(), OSError(111, "refused")),
            httpx.ConnectError,
            ProviderUnreachable,
        ),
    ],
)
def test_aiohttp_cause_decides(
    cause: Exception, as_: type[httpx.TransportError], expected: type[InvoiceError]
) -> None:
    assert type(transport_error(_wrapped(cause, as_))) is expected


def test_map_transport_errors_raises_once_with_cause() -> None:
    original = httpx.ReadTimeout("slow", request=REQUEST)
    with pytest.raises(OutcomeUnknown) as caught, map_transport_errors():
        raise original
    assert caught.value.__cause__ is original


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), map_transport_errors():
        raise KeyError("a bug stays a bug")
