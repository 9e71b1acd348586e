"""What every command shares: settings, Redis, exit codes, output, and error translation.

Every command runs through `guarded` (hooked in by `worker.cli`), the one
place where a usage or configuration error becomes one line on stderr naming
what to fix, and exit code 2, never a traceback: a malformed or missing
setting, a Redis that is down or refuses our password, an embedded Redis that
cannot start or does not exist, a file that cannot be read or written. What a
command parses itself and finds wrong it reports with `fail`. A bug still
shows its traceback: it is not the user's to fix.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import redis.asyncio as aioredis
import typer
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console
from rich.text import Text
from typer._click import ClickException

from jobs.errors import ConfigurationError
from jobs.models import Provider
from worker.embedded import EmbeddedRedisError, with_redis
from worker.keys import Keys
from worker.log_format import LogFormat
from worker.observability import protect, scrub, setup_logging
from worker.settings import Settings, load_settings

T = TypeVar("T")

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `message` to stderr as one line and exit with `code` (2: usage or configuration)."""
    print_error(message)
    raise typer.Exit(code)


def print_error(message: str) -> None:
    """`error: message` on stderr, as one line."""
    # Text, not markup: a file name like `[march].csv` is printed as typed;
    # soft_wrap: one line whatever the terminal width, for people and for grep.
    err.print(Text("error: ", style="red") + Text(message), soft_wrap=True, highlight=False)


def guarded(command: Callable[..., T]) -> Callable[..., T]:
    """`command`, with every usage or configuration error turned into `fail` (exit 2)."""

    @functools.wraps(command)
    def run_guarded(*args: Any, **kwargs: Any) -> T:
        try:
            return command(*args, **kwargs)
        except ConfigurationError as exc:
            fail(exc.message)
        except EmbeddedRedisError as exc:
            fail(str(exc))
        except (RedisConnectionError, RedisTimeoutError, NoPermissionError) as exc:
            fail(redis_problem(exc))
        except OSError as exc:
            if exc.filename is None:  # not about a path the user gave: a bug, shown as one
                raise
            fail(f"{exc.filename}: {exc.strerror or exc}")

    return run_guarded


def usage_line(exc: ClickException) -> str:
    """A click usage error (missing option, bad value...) as one line, with where to read more."""
    message = re.sub(r"\s+", " ", exc.format_message()).strip()
    message = message.replace("Value error, ", "")
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message += f" (see: {ctx.command_path} {ctx.help_option_names[0]})"
    return message


_redis_in_use: str | None = None
"""Which Redis this command talks to, for error messages (never with its password)."""


def redis_problem(exc: Exception) -> str:
    """What went wrong with Redis, where, and what to fix."""
    where = _redis_in_use or "Redis"
    detail = scrub(str(exc)).strip().rstrip(".") or type(exc).__name__
    if isinstance(exc, AuthenticationError):
        return f"{where} refused our credentials ({detail}): fix the password in INVOICER_REDIS_URL"
    if isinstance(exc, NoPermissionError):
        return f"{where} does not allow what we need ({detail}): check the Redis user's ACL"
    return f"cannot reach {where} ({detail}): start it, or fix INVOICER_REDIS_URL"


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


def with_redis_url(s: Settings, *, quiet: bool = False, create: bool = True) -> Settings:
    """`s` with a Redis URL, starting the embedded Redis (and saying so) if needed.

    Args:
        quiet: do not say which embedded Redis is used (machine output).
        create: may start a new, empty embedded Redis; commands that only read
            or steer pass False and get exit 2 where none ever ran
            (`worker.embedded.with_redis`).
    """
    global _redis_in_use
    resolved, note = with_redis(s, create=create)
    if s.redis_url is not None:
        _redis_in_use = f"Redis at {scrub(s.redis_url.get_secret_value())} (INVOICER_REDIS_URL)"
    else:
        _redis_in_use = f"the embedded Redis in {s.data_dir.absolute()}/"
    if note and not quiet:
        err.print(note, style="dim", highlight=False, soft_wrap=True)
    return resolved


def redis_in_use() -> str:
    """Which Redis `with_redis_url` chose, in words (never with its password)."""
    return _redis_in_use or "Redis"


@asynccontextmanager
async def redis_client(s: Settings) -> AsyncIterator[aioredis.Redis]:
    """A Redis client on the configured (or embedded) server; closed afterwards."""
    assert s.redis_url is not None, "call with_redis_url() first"
    client = aioredis.Redis.from_url(s.redis_url.get_secret_value())
    try:
        yield client
    finally:
        await client.aclose()


def output_path(value: Path | None) -> Path | None:
    """Typer callback of `--out` options: a file we can create, or '-' (stdout).

    Checked before any work, so a typo costs no 100,000-invoice read and no
    traceback at the end of one.
    """
    if value is None or str(value) == "-":
        return value
    if value.is_dir():
        raise typer.BadParameter(f"{value} is a directory: name a file in it")
    folder = value.absolute().parent
    if not folder.is_dir():
        raise typer.BadParameter(f"{value}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"{value}: cannot create files in {folder}")
    return value


def keys(s: Settings) -> Keys:
    """Key names under the configured prefix."""
    return Keys(s.redis_prefix)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from a synchronous command."""
    return asyncio.run(coro)
