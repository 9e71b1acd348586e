"""The ASGI face of the sandbox: provider paths on a fast path, /_sandbox via FastAPI.

`SandboxApp` is a FastAPI app (OpenAPI at /docs documents the inspection
API) whose `__call__` hands provider requests straight to `core.Sandbox`,
skipping Starlette's routing and middleware: that keeps a single process well
above 2,000 requests/s. Only this module speaks ASGI messages, including the
two ways a fault ends a request without a normal answer: a held response and
a dropped connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from sandbox.config import SandboxConfig
from sandbox.core import Sandbox
from sandbox.inspect import inspection_router
from sandbox.wire import Reply, Request

_FASTAPI_PATHS = ("/_sandbox", "/docs", "/openapi.json", "/redoc")


class SandboxApp(FastAPI):
    """FastAPI for /_sandbox and docs; everything else is a provider request."""

    def __init__(self, sandbox: Sandbox, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route provider requests past FastAPI; the rest through it."""
        if scope["type"] == "http" and not scope["path"].startswith(_FASTAPI_PATHS):
            await _serve_provider(self.sandbox, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(config: SandboxConfig | None = None) -> SandboxApp:
    """A sandbox app serving Maast under /platform, Stax at /invoice etc., and /_sandbox."""
    sandbox = Sandbox(config or SandboxConfig())
    app = SandboxApp(
        sandbox,
        title="invoicer provider sandbox",
        description="A local Maast + Stax with fault injection. See docs/sandbox.md.",
    )
    app.include_router(inspection_router(sandbox))
    return app


async def _serve_provider(sandbox: Sandbox, scope: Scope, receive: Receive, send: Send) -> None:
    body = await _read_body(receive)
    if body is None:
        return  # the client went away before sending its body
    client = scope.get("client") or ("unknown", 0)
    request = Request(
        method=scope["method"],
        path=scope["path"],
        query=scope["query_string"],
        headers=dict(scope["headers"]),
        body=body,
        client_ip=client[0],
    )
    answer = await sandbox.handle(request)
    if answer.action == "drop":
        await _drop(answer, receive, send)
        return
    if answer.action == "hold":
        # Long enough for the client's read timeout to fire; the invoice exists.
        await asyncio.sleep(answer.hold_s)
    await _send_head(answer, send)
    await send({"type": "http.response.body", "body": answer.body})


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_head(answer: Reply, send: Send) -> None:
    length = (b"content-length", str(len(answer.body)).encode())
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [*answer.headers, length],
        }
    )


async def _drop(answer: Reply, receive: Receive, send: Send) -> None:
    """End the request without a (complete) response.

    uvicorn has no ASGI message for "close the connection", but its `receive`
    is a method of the request cycle, which holds the asyncio transport:
    closing it sends FIN before any response byte, and uvicorn then sees a
    disconnected client and sends nothing. `head` mode first writes the status
    line and headers. Without a reachable transport (another server), we send
    the head and return without the body, which makes uvicorn close.
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if answer.drop_mode == "head" or transport is None:
        await _send_head(answer, send)
    if transport is not None:
        transport.close()
        # Let uvicorn's connection_lost run before we return, so it knows the
        # client is gone and does not answer for us with a 500.
        for _ in range(3):
            await asyncio.sleep(0)
