"""The provider client base: config secrecy, the shared client, `HttpProvider`
as an ABC and, above all, what the real aiohttp transport makes of a server
that hangs up, never answers or refuses the connection."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest

from jobs.errors import ConfigurationError, OutcomeUnknown, ProviderUnavailable
from jobs.providers.base import HttpProvider, ProviderConfig, build_client
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


def test_http_provider_is_abstract() -> None:
    config = ProviderConfig(base_url="https://x.test", api_key="k")
    with pytest.raises(TypeError, match="abstract"):
        HttpProvider(config)  # type: ignore[abstract]

    class Partial(HttpProvider):
        name = "Partial"
        create_path = "/invoice"

        def _authorization(self, *, redacted: bool) -> str:
            return "Bearer ***"

    with pytest.raises(TypeError, match="_create_body"):
        Partial(config)  # type: ignore[abstract]


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
        await provider.create(maast_invoice(), send_now=False)
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
            receipt = await provider.create(maast_invoice(), send_now=False)
        finally:
            await provider.aclose()
    assert receipt.provider_id == "7"
    assert receipt.total == Decimal("15.25")


# --- requests that cannot even be built ------------------------------------------------------

CURLY_KEY = "sk-live-0123456789abcdef\u2019"


@pytest.mark.parametrize("provider_class", [MaastProvider, StaxProvider])
@pytest.mark.parametrize(
    "key", [CURLY_KEY, "sk-live-0123\n456789", "sk-live-0123\x00456789"], ids=["curly", "nl", "nul"]
)
async def test_a_key_headers_cannot_carry_is_a_configuration_error_and_nothing_leaves(
    provider_class: type[MaastProvider | StaxProvider], key: str
) -> None:
    # A config built past the settings' checks: httpx raised UnicodeEncodeError
    # (holding "Bearer <key>") and aiohttp ValueError, both read as bugs.
    connections: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await reader.read(100))
        writer.close()

    async with local_server(record) as url:
        provider = provider_class(ProviderConfig(base_url=url, api_key=key))
        try:
            with pytest.raises(ConfigurationError) as caught:
                await provider.create(maast_invoice(), send_now=False)
        finally:
            await provider.aclose()
    error = caught.value
    assert error.setting == "api_key" and "API key" in error.message
    assert error.__cause__ is None and error.__suppress_context__
    assert "0123" not in repr(error) and "0123" not in error.describe()
    assert connections == []  # refused before a connection was even opened


def test_a_base_url_that_cannot_make_a_request_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        StaxProvider(ProviderConfig(base_url="http://127.0.0.1:9/\x00", api_key=API_KEY))
    assert caught.value.setting == "base_url"


async def test_a_provider_echoing_our_key_back_has_it_masked() -> None:
    answer = json.dumps({"error": f"invalid key {API_KEY}", "key": [f"{API_KEY} is revoked"]})

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(answer)}\r\n\r\n{answer}".encode()
        )
        await writer.drain()
        writer.close()

    async with local_server(refuse) as url:
        provider = StaxProvider(ProviderConfig(base_url=url, api_key=API_KEY))
        try:
            with pytest.raises(ConfigurationError) as caught:
                await provider.create(maast_invoice(), send_now=False)
        finally:
            await provider.aclose()
    assert API_KEY not in caught.value.describe() and API_KEY not in repr(caught.value)
    assert "invalid key ***" in caught.value.message
