"""Running the sandbox: `serve` (blocking) and `running_sandbox` (a context manager).

uvicorn is tuned for throughput and quiet: no access log, no server/date
headers, h11, a keep-alive longer than any client pool's so an idle pooled
connection is never closed under a client (which would look like a dropped
connection). `running_sandbox` binds a free 127.0.0.1 port itself and hands
the listening socket to a subprocess (default, so the caller's event loop is
not shared) or a thread, so there is no race for the port.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from sandbox.app import create_app
from sandbox.config import SandboxConfig

_PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEEP_ALIVE_S = 120


def uvicorn_config(
    config: SandboxConfig | None,
    host: str = "127.0.0.1",
    port: int = 8765,
    log_level: str = "warning",
) -> uvicorn.Config:
    """The uvicorn settings the sandbox runs with."""
    return uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        http="h11",
        loop="asyncio",
        access_log=False,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=1,
    )


def serve(
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    fd: int | None = None,
    log_level: str = "warning",
) -> None:
    """Serve the sandbox until interrupted (Ctrl-C / SIGTERM).

    Args:
        config: switches, limits and faults (docs/sandbox.md, Configuration).
        host, port: where to listen (ignored when `fd` is given).
        fd: an already bound and listening socket to serve on.
        log_level: uvicorn's log level; requests are never logged.
    """
    server = uvicorn.Server(uvicorn_config(config, host, port, log_level))
    sockets = [socket.socket(fileno=fd)] if fd is not None else None
    server.run(sockets=sockets)


@contextlib.contextmanager
def running_sandbox(
    config: SandboxConfig | None = None,
    *,
    in_process: bool = False,
    startup_timeout_s: float = 20.0,
) -> Iterator[str]:
    """Run a sandbox on a free 127.0.0.1 port; yield its base URL; stop it.

    Args:
        config: the sandbox configuration (sent to the subprocess as JSON).
        in_process: run in a thread of this process instead of a subprocess.
        startup_timeout_s: how long to wait for it to answer /_sandbox/health.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    start = _start_thread if in_process else _start_process
    stop, alive = start(config or SandboxConfig(), listener)
    try:
        _wait_ready(url, alive, startup_timeout_s)
        yield url
    finally:
        stop()


def _start_process(
    config: SandboxConfig, listener: socket.socket
) -> tuple[Callable[[], None], Callable[[], bool]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "sandbox", "--fd", str(listener.fileno())]
    # Its own process group: a Ctrl-C in the terminal reaches the whole
    # foreground group, and the sandbox must outlive the workers that finish
    # their in-flight requests against it; `stop` ends it.
    process = subprocess.Popen(
        [*command, "--config-stdin"],
        stdin=subprocess.PIPE,
        pass_fds=(listener.fileno(),),
        env=env,
        process_group=0,
    )
    listener.close()  # the child has its own copy
    assert process.stdin is not None
    process.stdin.write(config.model_dump_json().encode())
    process.stdin.close()

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    return stop, lambda: process.poll() is None


def _start_thread(
    config: SandboxConfig, listener: socket.socket
) -> tuple[Callable[[], None], Callable[[], bool]]:
    server = uvicorn.Server(uvicorn_config(config))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="sandbox", daemon=True
    )
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()

    return stop, thread.is_alive


def _wait_ready(url: str, alive: Callable[[], bool], timeout_s: float) -> None:
    # No proxies: a proxy from the environment must not see 127.0.0.1 calls.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the sandbox exited during startup (see its stderr)")
        try:
            with opener.open(f"{url}/_sandbox/health", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"the sandbox did not answer at {url} within {timeout_s} s")
