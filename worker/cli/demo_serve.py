"""`invoicer demo --serve`: the demo with the dashboard up, until Ctrl-C.

The dashboard (`worker.web.create_app`, served by uvicorn in the demo's own
event loop, on 127.0.0.1 only) is up before the first invoice is enqueued,
so the batch can be watched filling and draining; once the summary is
printed it stays up on the demo's data until Ctrl-C (or SIGTERM). On the
way out everything the demo started stops: the server, the in-process
workers (a Ctrl-C during the run cancels them: their invoices stay in the
ledger, in doubt at worst), the provider sandbox, and the embedded Redis
if this run started it (the caller's part).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import redis.asyncio as aioredis

from worker.cli import common
from worker.settings import Settings

T = TypeVar("T")
HOST = "127.0.0.1"
STOP_WAIT_S = 5.0
"""How long open dashboard connections (a browser's poll) may delay the exit."""


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) came before the demo's run had finished."""


def listening_socket(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1:`port` (0: any free port), or exit 2 saying why not."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        common.fail(f"cannot listen on {HOST}:{port} ({exc.strerror or exc}): pass another --port")
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def dashboard(s: Settings, sock: socket.socket) -> AsyncIterator[str]:
    """Serve the dashboard on `sock` while the block runs; yields its URL."""
    import uvicorn

    from worker.web import create_app

    class Server(uvicorn.Server):
        """uvicorn's server, leaving signals to the demo (which stops it itself)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    redis = aioredis.Redis.from_url(_url(s))
    config = uvicorn.Config(
        create_app(s, redis),
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(STOP_WAIT_S),
    )
    server = Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                common.fail(f"the dashboard did not start on {HOST}")
            await asyncio.sleep(0.02)
        port = sock.getsockname()[1]
        yield f"http://{HOST}:{port}/"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, STOP_WAIT_S + 2)
        sock.close()
        await redis.aclose()


async def until_stopped(
    run: Callable[[Callable[[], None]], Coroutine[Any, Any, T]],
    after: Callable[[T], None],
    *,
    grace_s: float,
) -> T:
    """`run(on_signal)`, then `after(result)`, then wait for Ctrl-C or SIGTERM.

    `run` hands `on_signal` to the workers (`run_workers`), whose own handler
    makes them finish in-flight jobs on a signal and then tells us: the run
    then ends within `grace_s` (its summary says what is still waiting) and
    nothing waits for a second Ctrl-C. A signal while no worker runs is ours.

    Raises:
        Interrupted: the run was cut short (a signal before the workers ran,
            or they did not stop within `grace_s`).
    """
    stop = asyncio.Event()
    ours = asyncio.Event()

    def mine() -> None:
        ours.set()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, mine)
    work = asyncio.create_task(run(stop.set))
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            await asyncio.wait({work}, timeout=0 if ours.is_set() else grace_s)
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            raise Interrupted
        result = work.result()
        if stop.is_set():
            return result
        # The workers' handler replaced ours while they ran: take the signals back.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, mine)
        after(result)
        await waiter
        return result
    finally:
        waiter.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _url(s: Settings) -> str:
    assert s.redis_url is not None
    return s.redis_url.get_secret_value()
