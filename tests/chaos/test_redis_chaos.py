"""`make chaos`: Redis crashed again and again under running workers (rules 5 and 6).

Each round enqueues a batch, drains it with three `invoicer worker`
processes against the sandbox (slow, jittered answers: requests are always
in flight), and crashes the host of Redis several times at random points of
the run: SIGKILL of redis-server and of one worker (they shared the host),
the AOF cut back to its size of 1 to 2 s earlier (what the disk held), a
restart after a moment, and a new worker in place of the dead one. One round
restarts Redis cleanly instead. Every round must end with every invoice
created exactly once (one live invoice per number at the sandbox) and
nothing missing; the figures are printed per round and in total.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
from pathlib import Path

import pytest

from sandbox.client import SandboxClient
from sandbox.config import Faults
from tests.redis_server import RedisServer
from tests.worker.redis_trouble import Figures, Spawn, Trouble, kill, run, until_created

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

ROUNDS = 4
INVOICES = 600
CRASHES = 3


def crashes(sandbox: SandboxClient, rng: random.Random, count: int) -> Trouble:
    async def trouble(
        server: RedisServer, figures: Figures, procs: list[subprocess.Popen[bytes]], spawn: Spawn
    ) -> None:
        points = sorted(rng.sample(range(40, INVOICES - 100), count))
        for at in points:
            await until_created(sandbox, at, timeout_s=300)()
            alive = [p for p in procs if p.poll() is None]
            kill(rng.choice(alive))  # the worker on Redis's host
            cut = await asyncio.to_thread(server.crash, rng.uniform(1.0, 2.0))
            figures.crashes += 1
            figures.aof_bytes_cut.append(cut.cut)
            await asyncio.sleep(rng.uniform(0.2, 2.0))
            await asyncio.to_thread(server.start)
            spawn()  # its supervisor starts it again

    return trouble


def restarts(sandbox: SandboxClient, rng: random.Random, count: int) -> Trouble:
    async def trouble(
        server: RedisServer, figures: Figures, _: list[subprocess.Popen[bytes]], __: Spawn
    ) -> None:
        for at in sorted(rng.sample(range(40, INVOICES - 100), count)):
            await until_created(sandbox, at, timeout_s=300)()
            await asyncio.to_thread(server.restart, rng.uniform(1.0, 3.0))
            figures.restarts += 1

    return trouble


async def test_redis_crashes_under_running_workers(
    tmp_path: Path, sandbox: SandboxClient, sandbox_url: str
) -> None:
    rng = random.Random(20261201)
    rounds: list[Figures] = []
    for i in range(ROUNDS):
        await sandbox.reset()
        await sandbox.set_faults(Faults(latency_ms=120, latency_jitter_ms=120))
        server = RedisServer(tmp_path / f"redis-{i}", appendfsync="everysec")
        server.start()
        trouble = restarts(sandbox, rng, 2) if i == ROUNDS - 1 else crashes(sandbox, rng, CRASHES)
        try:
            figures = await run(
                server,
                sandbox,
                sandbox_url,
                invoices=INVOICES,
                workers=3,
                concurrency=10,
                trouble=trouble,
                prefix=f"C{i}",
                timeout_s=900,
            )
        finally:
            server.close()
        print(f"round {i + 1}: {figures.line()}")
        rounds.append(figures)
        # Every worker ended its burst, but those killed with the host (-9).
        assert all(code in (0, -9) for code in figures.worker_exits), figures.worker_logs
        assert figures.duplicates == [], figures.duplicates[:20]
        assert figures.missing == [], figures.missing[:20]
    total_cut = sum(sum(f.aof_bytes_cut) for f in rounds)
    print(
        f"total: {sum(f.invoices for f in rounds)} invoices, "
        f"{sum(f.crashes for f in rounds)} crashes, {sum(f.restarts for f in rounds)} restarts, "
        f"{total_cut:,} AOF bytes cut, "
        f"{sum(len(f.duplicates) for f in rounds)} duplicates, "
        f"{sum(len(f.missing) for f in rounds)} missing, "
        f"{sum(f.marked for f in rounds)} looked up first"
    )
