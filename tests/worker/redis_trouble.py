"""Runs of real worker processes against the sandbox while their Redis restarts or crashes.

Shared by tests/worker/test_redis_trouble.py (short runs, `make test`) and
tests/chaos/test_redis_chaos.py (long, repeated ones, `make chaos`). Redis is
a `tests.redis_server.RedisServer` of the run's own; the workers are
`invoicer worker --burst` processes, so a run ends when the queue is empty.
What a run yields are the figures its test asserts on and prints: per
invoice number, how many the sandbox created and holds live; how many the
ledger says are created, waiting or dead-lettered; the AOF bytes cut.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from jobs.models import Provider
from sandbox.client import SandboxClient
from tests.redis_server import RedisServer
from tests.worker.support import (
    ROOT,
    enqueue,
    invoice,
    settings_of,
    start_worker,
    worker_env,
)
from worker.keys import Keys, invoice_key
from worker.ledger import Ledger, State


@dataclass
class Figures:
    """What one run did."""

    invoices: int
    crashes: int = 0
    restarts: int = 0
    aof_bytes_cut: list[int] = field(default_factory=list)
    created_at_sandbox: int = 0
    duplicates: list[str] = field(default_factory=list)
    """Numbers with more than one live invoice at the sandbox."""
    missing: list[str] = field(default_factory=list)
    """Numbers neither created, nor dead-lettered, nor visibly waiting."""
    dead_lettered: int = 0
    marked: int = 0
    """Invoices looked up first after a new Redis instance (every recovery's count)."""
    worker_exits: list[int] = field(default_factory=list)
    worker_logs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        cut = ", ".join(f"{b:,}" for b in self.aof_bytes_cut) or "-"
        return (
            f"invoices {self.invoices}, crashes {self.crashes}, restarts {self.restarts}, "
            f"AOF bytes cut [{cut}], created {self.created_at_sandbox}, "
            f"duplicates {len(self.duplicates)}, missing {len(self.missing)}, "
            f"dead-lettered {self.dead_lettered}, looked up first {self.marked}, "
            f"{self.seconds:.1f} s"
        )


Spawn = Callable[[], subprocess.Popen[bytes]]
"""Start one more worker of the run (it joins the run's list)."""
Trouble = Callable[[RedisServer, Figures, list[subprocess.Popen[bytes]], Spawn], Awaitable[None]]
"""What happens to Redis (and perhaps to some workers) once the run is under way."""


async def created_so_far(sandbox: SandboxClient) -> int:
    return sum((await sandbox.created_counts("maast")).values())


async def run(
    server: RedisServer,
    sandbox: SandboxClient,
    sandbox_url: str,
    *,
    invoices: int,
    workers: int,
    concurrency: int,
    trouble: Trouble,
    prefix: str = "RT",
    timeout_s: float = 180.0,
    replacements: int = 0,
    arq_cli: bool = False,
) -> Figures:
    """Enqueue `invoices`, drain them with `workers` processes while `trouble`
    happens, and count what came of each invoice.

    `trouble` gets the worker processes (it may kill some) and a way to
    start more; `replacements` workers are started after it, as a supervisor
    would restart dead ones.
    With `arq_cli`, the workers are arq's own CLI on `worker.app.WorkerSettings`.
    """
    started = time.monotonic()
    env = worker_env(server.url, sandbox_url)
    numbers = [f"{prefix}-{i:05d}" for i in range(invoices)]
    await enqueue(env, [invoice(n) for n in numbers], Provider.MAAST)
    figures = Figures(invoices=invoices)
    args = ("--providers", "maast", "--concurrency", str(concurrency), "--burst")
    env["INVOICER_CONCURRENCY"] = str(concurrency)

    procs: list[subprocess.Popen[bytes]] = []

    def spawn() -> subprocess.Popen[bytes]:
        proc = arq_worker(env) if arq_cli else start_worker(env, *args)
        procs.append(proc)
        return proc

    for _ in range(workers):
        spawn()
    await trouble(server, figures, procs, spawn)
    for _ in range(replacements):
        spawn()
    for proc in procs:
        try:
            _, err = await asyncio.to_thread(proc.communicate, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        figures.worker_exits.append(proc.returncode)
        figures.worker_logs.append(err.decode(errors="replace"))
    await count(server, sandbox, env, numbers, figures)
    figures.seconds = time.monotonic() - started
    return figures


async def count(
    server: RedisServer,
    sandbox: SandboxClient,
    env: dict[str, str],
    numbers: list[str],
    figures: Figures,
) -> None:
    copies = await sandbox.copies("maast")
    figures.created_at_sandbox = sum(c.created for c in copies.values())
    figures.duplicates = sorted(n for n, c in copies.items() if c.live > 1)
    keys = Keys(settings_of(env).redis_prefix)
    client = aioredis.Redis.from_url(server.url)
    try:
        records = await Ledger(client, keys).get_many(
            [invoice_key(Provider.MAAST, "default", n) for n in numbers]
        )
        for number, record in zip(numbers, records, strict=True):
            live = copies.get(number)
            if record is None:
                figures.missing.append(number)
            elif record.dead_lettered:
                figures.dead_lettered += 1
            elif record.state in (State.CREATED, State.SENT):
                if live is None or live.live != 1:
                    figures.missing.append(number)
            elif record.state not in (State.QUEUED, State.IN_DOUBT):  # waiting is visible
                figures.missing.append(number)
        for raw in await client.lrange(keys.epochs(), 0, -1):
            figures.marked += int(json.loads(raw)["marked"])
    finally:
        await client.aclose()


def until_created(
    sandbox: SandboxClient, at_least: int, timeout_s: float = 60.0
) -> Callable[[], Awaitable[None]]:
    """Wait until the sandbox holds `at_least` invoices (the run is under way)."""

    async def wait() -> None:
        deadline = time.monotonic() + timeout_s
        while await created_so_far(sandbox) < at_least:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {at_least} invoices created in {timeout_s}s")
            await asyncio.sleep(0.05)

    return wait


def arq_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`arq worker.app.WorkerSettings --burst`, the way in for arq users."""
    return subprocess.Popen(
        [sys.executable, "-m", "arq", "worker.app.WorkerSettings", "--burst"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL, as a host crash would."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
