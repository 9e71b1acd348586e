"""What every command shares: settings, Redis, exit codes, output."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar

import redis.asyncio as aioredis
import typer
from rich.console import Console

from jobs.errors import ConfigurationError
from jobs.models import Provider
from worker.embedded import with_redis
from worker.keys import Keys
from worker.log_format import LogFormat
from worker.observability import protect, setup_logging
from worker.settings import Settings, load_settings

T = TypeVar("T")

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `message` to stderr and exit with `code` (2: usage or configuration)."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


_log_format: LogFormat | None = None
"""`--log-format` as given on the command line (wins over INVOICER_LOG_FORMAT)."""


def use_log_format(fmt: LogFormat) -> None:
    """Log in `fmt` from now on, whatever the settings say."""
    global _log_format
    _log_format = fmt
    setup_logging(fmt=fmt)


def settings() -> Settings:
    """The settings, or exit 2 naming the bad variable; logging follows their format."""
    try:
        s = load_settings()
    except ConfigurationError as exc:
        fail(exc.message)
    if _log_format is None and s.log_format != "text":
        setup_logging(fmt=s.log_format)
    protect(s)
    return s


def require_key(s: Settings, provider: Provider) -> None:
    """Exit 2 naming the variable when `provider` has no API key."""
    try:
        s.provider(provider).require_key()
    except ConfigurationError as exc:
        fail(exc.message)


def with_redis_url(s: Settings, *, quiet: bool = False) -> Settings:
    """`s` with a Redis URL, starting the embedded Redis (and saying so) if needed."""
    resolved, note = with_redis(s)
    if note and not quiet:
        err.print(note, style="dim", highlight=False)
    return resolved


@asynccontextmanager
async def redis_client(s: Settings) -> AsyncIterator[aioredis.Redis]:
    """A Redis client on the configured (or embedded) server; closed afterwards."""
    assert s.redis_url is not None, "call with_redis_url() first"
    client = aioredis.Redis.from_url(s.redis_url.get_secret_value())
    try:
        yield client
    finally:
        await client.aclose()


def keys(s: Settings) -> Keys:
    """Key names under the configured prefix."""
    return Keys(s.redis_prefix)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from a synchronous command."""
    return asyncio.run(coro)
