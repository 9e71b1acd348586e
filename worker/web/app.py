"""`create_app(settings, redis)`: the FastAPI application of `invoicer web`.

It wires the pieces and holds no logic: the context every route gets, the
error handlers (`errors.install`), the security headers, the API routers,
the dashboard's router and the static files. It reads no environment: the
caller (`worker/cli/web.py`, a test, a benchmark) passes the settings and a
Redis client, and closes the client itself.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from worker.keys import Keys
from worker.settings import Settings
from worker.web import dashboard, errors
from worker.web.context import WebContext
from worker.web.docs import docs_router
from worker.web.headers import SecurityHeaders
from worker.web.roles import Tokens
from worker.web.routes import batches, dead_letters, health, invoices, metrics, providers
from worker.web.session import SessionCodec

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "dashboard" / "templates"
OPENAPI_URL = "/openapi.json"

DESCRIPTION = """\
Hand invoices to invoicer over HTTP and watch them being created, exactly once.

Authenticate with `Authorization: Bearer <token>`: `INVOICER_ADMIN_TOKEN` may
act, `INVOICER_READ_TOKEN` may only read. Every error is a JSON body
`{"error": {"status", "code", "message", "fix", "problems"?}}`.
"""


def _version() -> str:
    try:
        return metadata.version("invoicer")
    except metadata.PackageNotFoundError:
        return "0"


def create_app(
    settings: Settings, redis: aioredis.Redis, *, with_dashboard: bool = True
) -> FastAPI:
    """The application, over `redis` (which the caller opens and closes)."""
    app = FastAPI(
        title="invoicer",
        version=_version(),
        description=DESCRIPTION,
        docs_url=None,  # ours, from vendored files (worker.web.docs)
        redoc_url=None,
        openapi_url=OPENAPI_URL,
    )
    tokens = Tokens.of(settings)
    app.state.invoicer = WebContext(
        settings=settings, redis=redis, keys=Keys(settings.redis_prefix), tokens=tokens
    )
    app.state.sessions = SessionCodec.of(tokens)
    errors.install(app)
    app.add_middleware(SecurityHeaders)
    for module in (health, invoices, batches, dead_letters, providers, metrics):
        app.include_router(module.router)
    app.include_router(docs_router(app.title, OPENAPI_URL))
    if with_dashboard:
        dashboard.install(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
