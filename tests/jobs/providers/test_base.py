"""The shared provider plumbing: config secrecy, JSON, Retry-After and,
above all, the mapping of transport failures to "never sent" or "maybe sent"."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import aiohttp
import httpx2 as httpx
import pytest

from jobs.errors import (
    ConfigurationError,
    FieldError,
    InvoiceError,
    InvoiceInvalid,
    OutcomeUnknown,
    ProviderUnavailable,
)
from jobs.models import Provider
from jobs.providers import make_provider, validator
from jobs.providers.base import (
    ProviderConfig,
    build_client,
    dumps,
    field_errors_from,
    loads,
    map_transport_errors,
    retry_after_s,
    transport_error,
)
from jobs.providers.maast import MaastProvider
from jobs.providers.stax import StaxProvider
from tests.jobs.providers.conftest import API_KEY, maast_invoice

# --- config -----------------------------------------------------------------------


def test_config_repr_and_str_hide_the_key() -> None:
    config = ProviderConfig(base_url="https://x.test", api_key=API_KEY)
    assert API_KEY not in repr(config)
    assert API_KEY not in str(config)
    assert "api_key='***'" in repr(config)
    assert API_KEY not in repr(MaastProvider(config))


async def test_build_client_has_explicit_timeouts_and_ignores_the_environment() -> None:
    config = ProviderConfig(
        base_url="https://x.test", api_key="k", connect_timeout_s=2.5, read_timeout_s=7.0
    )
    client = build_client(config)
    try:
        assert client.timeout.connect == 2.5
        assert client.timeout.read == 7.0
        assert client.trust_env is False
    finally:
        await client.aclose()


# --- JSON and helpers ----------------------------------------------------------------


def test_dumps_writes_decimals_exactly() -> None:
    body = {"a": Decimal("0.10"), "b": Decimal("12345678.99"), "c": [1, True, None, "é"]}
    text = dumps(body)
    assert text == '{"a":0.10,"b":12345678.99,"c":[1,true,null,"é"]}'
    assert loads(text) == body


def test_dumps_refuses_what_is_not_json() -> None:
    with pytest.raises(ValueError):
        dumps(Decimal("NaN"))
    with pytest.raises(TypeError):
        dumps(object())


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
        (httpx.ConnectError("refused", request=REQUEST), ProviderUnavailable),
        (httpx.ConnectTimeout("slow", request=REQUEST), ProviderUnavailable),
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
        (aiohttp.ConnectionTimeoutError("pool"), httpx.TimeoutException, ProviderUnavailable),
        (
            aiohttp.ClientConnectorError(_conn_key(), OSError(111, "refused")),
            httpx.ConnectError,
            ProviderUnavailable,
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


# --- the real aiohttp transport against 127.0.0.1 --------------------------------------------

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def local_server(serve: Serve) -> AsyncIterator[str]:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


async def _create_through(base_url: str, read_timeout_s: float = 5.0) -> None:
    config = ProviderConfig(
        base_url=base_url, api_key=API_KEY, connect_timeout_s=2.0, read_timeout_s=read_timeout_s
    )
    provider = MaastProvider(config)  # the real aiohttp transport
    try:
        await provider.create(maast_invoice())
    finally:
        await provider.aclose()


async def test_server_closing_after_reading_the_request_is_outcome_unknown() -> None:
    received: list[bytes] = []

    async def read_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await _read_request(reader))
        writer.close()

    async with local_server(read_then_hang_up) as url:
        with pytest.raises(OutcomeUnknown):
            await _create_through(url)
    assert received and b"INV-1" in received[0]  # it did arrive: a retry could duplicate
    head = received[0].lower()
    assert b"content-type: application/json" in head
    assert b"authorization: basic ojllzgvjmjfhmzfjmhh5ejc4owuzmgeznde2ywjjmtiz" in head


async def test_server_never_answering_is_outcome_unknown() -> None:
    async def read_then_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(2)
        writer.close()

    async with local_server(read_then_wait) as url:
        with pytest.raises(OutcomeUnknown):
            await _create_through(url, read_timeout_s=0.2)


async def test_refused_connection_is_provider_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on `port` any more: the connection is refused, nothing sent.
    with pytest.raises(ProviderUnavailable):
        await _create_through(f"http://127.0.0.1:{port}")


async def test_real_transport_round_trip() -> None:
    answer = (
        b'{"code":0,"message":"Success","data":{"invoice_id":7,"status":"SAVED","amt_tran":15.25}}'
    )

    async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(answer)}\r\n\r\n".encode()
            + answer
        )
        await writer.drain()
        writer.close()

    async with local_server(ok) as url:
        config = ProviderConfig(base_url=url, api_key=API_KEY)
        provider = MaastProvider(config)
        try:
            receipt = await provider.create(maast_invoice())
        finally:
            await provider.aclose()
    assert receipt.provider_id == "7"
    assert receipt.total == Decimal("15.25")


# --- make_provider and validator ----------------------------------------------------------


async def test_make_provider_builds_each_client() -> None:
    config = ProviderConfig(base_url="https://x.test", api_key="k")
    for provider, cls in [(Provider.MAAST, MaastProvider), (Provider.STAX, StaxProvider)]:
        client = make_provider(provider, config)
        assert isinstance(client, cls) and client.provider is provider
        await client.aclose()


@pytest.mark.parametrize("provider", list(Provider))
def test_validator_matches_the_client(provider: Provider) -> None:
    check = validator(provider)
    check(maast_invoice())  # valid at both
    with pytest.raises(InvoiceInvalid) as caught:
        check(maast_invoice(currency="JPY"))
    assert [f.field for f in caught.value.field_errors] == ["currency"]
