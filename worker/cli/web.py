"""`invoicer web`: serve the HTTP API, `/metrics` and the dashboard with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import Annotated

import typer

from worker.cli import common
from worker.settings import Settings


def register(app: typer.Typer) -> None:
    """Add `web` to the app."""
    app.command("web")(web)


def web(
    host: Annotated[
        str, typer.Option(help="Address to listen on (not loopback: needs a token).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
) -> None:
    """Serve the HTTP intake API, the operator API, /metrics and the dashboard.

    With neither INVOICER_ADMIN_TOKEN nor INVOICER_READ_TOKEN set it listens
    only on a loopback address (anyone reaching it could act). OpenAPI at /docs.
    """
    from worker.web.auth import bind_refusal
    from worker.web.roles import Tokens

    s = common.settings()
    refusal = bind_refusal(host, Tokens.of(s))
    if refusal is not None:
        common.fail(refusal)
    s = common.with_redis_url(s)
    from worker.observability import setup_sentry

    setup_sentry(s.sentry_dsn)  # its FastAPI integration reports the 500s
    common.err.print(f"invoicer web on http://{_url_host(host)}:{port}/ (API docs at /docs)")
    common.run(_serve(s, host, port))


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _serve(s: Settings, host: str, port: int) -> None:
    import uvicorn

    from worker.web import create_app

    class Server(uvicorn.Server):
        """uvicorn's server, stopping cleanly (exit 0) on SIGTERM and Ctrl-C.

        uvicorn re-raises the signal it caught once it has shut down, which
        kills the process with it (exit -15, or a KeyboardInterrupt traceback).
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    async with common.redis_client(s) as redis:
        app = create_app(s, redis)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,  # our handlers (scrubbed, text or JSON) from setup_logging
            access_log=False,
            server_header=False,
            proxy_headers=False,
        )
        server = Server(config)
        try:
            await server.serve()
        except OSError as exc:
            common.fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        if not server.started and not server.should_exit:
            common.fail(f"cannot listen on {host}:{port}")
