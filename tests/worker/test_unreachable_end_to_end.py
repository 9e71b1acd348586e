"""A provider nothing answers for, end to end: a real `invoicer worker` whose
MAAST_BASE_URL points at a port where nothing listens says so once, naming
the setting, pauses Maast instead of burning every invoice's retries, leaves
them all queued, and resumes by itself once the address answers (here: a
relay to the sandbox starts listening there); then every invoice is created
exactly once.

Before, it logged a warning per attempt per invoice and dead-lettered
everything as `exhausted` after eight attempts, never naming the setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import pytest
import redis.asyncio as aioredis

from jobs.models import Provider
from sandbox.client import SandboxClient
from tests.worker.support import ROOT, enqueue, invoice, start_worker, worker_env
from worker.cli.common import EXIT_OK

pytestmark = pytest.mark.slow
# Each test asks for `redis_client` for the flushed database it brings.
NUMBERS = [f"UR-{i:02d}" for i in range(10)]


def closed_port() -> int:
    """A port nothing listens on (bound and let go: refused until someone takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def relay(port: int, target_url: str) -> AsyncIterator[None]:
    """Listen on `port` and pass every connection on to `target_url`'s host."""
    target = urlparse(target_url)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def status(env: dict[str, str]) -> dict[str, object]:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "worker", "status", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_OK, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def maast_of(snapshot: dict[str, object]) -> dict[str, object]:
    providers = snapshot["providers"]
    assert isinstance(providers, list)
    (maast,) = [p for p in providers if p["provider"] == "maast"]
    return dict(maast)


async def wait_for(env: dict[str, str], check: str, timeout_s: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        snapshot = await status(env)
        maast = maast_of(snapshot)
        if (check == "paused") == bool(maast["paused"]) and (
            check == "paused" or snapshot["remaining"] == 0
        ):
            return snapshot
        assert time.monotonic() < deadline, f"never {check}: {snapshot}"
        await asyncio.sleep(0.3)


async def test_an_address_nothing_answers_pauses_once_and_resumes_when_it_answers(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    port = closed_port()
    env = worker_env(redis_url, sandbox_url, MAAST_BASE_URL=f"http://127.0.0.1:{port}")
    await enqueue(env, [invoice(n) for n in NUMBERS], Provider.MAAST)
    worker = start_worker(env, "--providers", "maast")
    try:
        # Maast is paused as unreachable, naming the setting, and nothing is given up,
        snapshot = await wait_for(env, "paused")
        maast = maast_of(snapshot)
        assert maast["paused_kind"] == "unreachable" and maast["paused_until_ms"] is None
        assert "MAAST_BASE_URL" in str(maast["paused_reason"])
        await asyncio.sleep(3)  # a few probes fail meanwhile: still paused, still queued
        snapshot = await status(env)
        assert maast_of(snapshot)["paused"] and snapshot["dead_letters"] == 0
        assert snapshot["counts"]["queued"] == len(NUMBERS)  # type: ignore[index]
        # and once the address answers, a probe resumes Maast by itself.
        async with relay(port, sandbox_url):
            snapshot = await wait_for(env, "done", timeout_s=60)
    finally:
        worker.terminate()
        _, err = await asyncio.to_thread(worker.communicate, timeout=30)
    stderr = err.decode()
    assert worker.returncode == 0, stderr[-3000:]
    assert await sandbox.created_counts("maast") == {n: 1 for n in NUMBERS}
    assert snapshot["dead_letters"] == 0
    # One message says what is wrong and what to check; none per invoice and try.
    errors = [line for line in stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "MAAST_BASE_URL" in errors[0], stderr[-3000:]
    assert "probe" in errors[0] and f"127.0.0.1:{port}" in errors[0]
    assert stderr.count("cannot connect to") == 1
    assert "retry maast:" not in stderr and "dead maast:" not in stderr
    assert stderr.count("answers again") == 1


async def test_a_burst_worker_gives_up_on_an_address_nothing_answers(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    env = worker_env(redis_url, sandbox_url, MAAST_BASE_URL=f"http://127.0.0.1:{closed_port()}")
    await enqueue(env, [invoice(n) for n in NUMBERS[:3]], Provider.MAAST)
    worker = start_worker(env, "--providers", "maast", "--burst")
    _, err = await asyncio.to_thread(worker.communicate, timeout=90)
    stderr = err.decode()
    # It stops once its own probes kept failing, saying what waits and how it ends,
    assert worker.returncode == 1, stderr[-3000:]
    (line,) = [x for x in stderr.splitlines() if x.startswith("stopped:")]
    assert "maast: 3 invoice(s) wait on its pause" in line and "MAAST_BASE_URL" in line
    assert "resumes it by itself once it answers" in line
    # and nothing was given up: every invoice waits, queued.
    snapshot = await status(env)
    assert snapshot["dead_letters"] == 0 and snapshot["counts"]["queued"] == 3  # type: ignore[index]
