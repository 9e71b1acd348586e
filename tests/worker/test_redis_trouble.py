"""Workers against a Redis that restarts or crashes mid-run (docs/operations.md, "Redis").

Real processes: `invoicer worker` against the sandbox over HTTP and a
redis-server of the test's own, restarted cleanly or crashed as a host would
(SIGKILL, then the AOF cut back to its size of a second earlier: what a
machine that lost its page cache finds). Short runs: the long, repeated ones
are in tests/chaos/.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from jobs.models import Provider
from sandbox.client import SandboxClient
from sandbox.config import Faults
from tests.redis_server import RedisServer
from tests.worker.redis_trouble import Figures, Spawn, kill, run, until_created
from tests.worker.support import ROOT, settings_of, start_worker, worker_env
from worker.keys import Keys

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    s = RedisServer(tmp_path / "redis", appendfsync="everysec")
    s.start()
    yield s
    s.close()


async def test_workers_ride_out_a_redis_restart_with_one_line_per_outage(
    server: RedisServer, sandbox: SandboxClient, sandbox_url: str
) -> None:
    await sandbox.set_faults(Faults(latency_ms=40, latency_jitter_ms=40))

    async def restart(
        s: RedisServer, figures: Figures, _: list[subprocess.Popen[bytes]], __: Spawn
    ) -> None:
        await until_created(sandbox, 30)()
        await asyncio.to_thread(s.restart, 1.5)  # down 1.5 s, then loading
        figures.restarts += 1

    figures = await run(
        server, sandbox, sandbox_url, invoices=240, workers=3, concurrency=8, trouble=restart
    )
    print(figures.line())
    # No worker exited,
    assert figures.worker_exits == [0, 0, 0], figures.worker_logs
    # each logged the outage in two lines (gone; back after N s), and no traceback,
    for log in figures.worker_logs:
        assert log.count("Redis unreachable") == 1, log[-3000:]
        assert log.count("Redis reachable again") == 1, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    # and every invoice exists exactly once.
    assert figures.duplicates == [] and figures.missing == [] and figures.dead_lettered == 0
    assert figures.created_at_sandbox == 240


async def test_arq_s_own_cli_rides_out_a_redis_restart_too(
    server: RedisServer, sandbox: SandboxClient, sandbox_url: str
) -> None:
    await sandbox.set_faults(Faults(latency_ms=40, latency_jitter_ms=40))

    async def restart(
        s: RedisServer, figures: Figures, _: list[subprocess.Popen[bytes]], __: Spawn
    ) -> None:
        await until_created(sandbox, 20)()
        await asyncio.to_thread(s.restart, 1.0)
        figures.restarts += 1

    figures = await run(
        server,
        sandbox,
        sandbox_url,
        invoices=80,
        workers=1,
        concurrency=8,
        trouble=restart,
        arq_cli=True,
    )
    print(figures.line())
    log = figures.worker_logs[0]
    at = log.find("Traceback")
    assert figures.worker_exits == [0] and at < 0, log[max(0, at - 2000) : at + 5000]
    assert figures.duplicates == [] and figures.missing == [] and figures.created_at_sandbox == 80


async def test_a_host_crash_mid_run_creates_no_duplicate_and_loses_nothing(
    server: RedisServer, sandbox: SandboxClient, sandbox_url: str
) -> None:
    # Slow enough that requests are in flight when the host goes.
    await sandbox.set_faults(Faults(latency_ms=150, latency_jitter_ms=150))

    async def crash(
        s: RedisServer, figures: Figures, procs: list[subprocess.Popen[bytes]], _: Spawn
    ) -> None:
        await until_created(sandbox, 40)()
        # The host of Redis and of one worker loses power: both die, and
        # Redis's last second of acknowledged writes never reached the disk.
        kill(procs[0])
        cut = await asyncio.to_thread(s.crash, 1.0)
        figures.crashes += 1
        figures.aof_bytes_cut.append(cut.cut)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(s.start)

    figures = await run(
        server,
        sandbox,
        sandbox_url,
        invoices=200,
        workers=2,
        concurrency=10,
        trouble=crash,
        replacements=1,  # the dead worker's supervisor starts it again
    )
    print(figures.line())
    assert figures.aof_bytes_cut[0] > 0  # writes were lost
    assert figures.marked > 0  # and the recovery looked invoices up first
    assert figures.worker_exits[1:] == [0, 0], figures.worker_logs
    assert figures.duplicates == [] and figures.missing == []
    assert figures.created_at_sandbox == 200 and figures.dead_lettered == 0


def test_a_worker_names_the_persistence_setting_at_start(tmp_path: Path, sandbox_url: str) -> None:
    server = RedisServer(tmp_path / "redis", appendonly="no")
    server.start()
    try:
        env = worker_env(server.url, sandbox_url)
        done = subprocess.run(
            [sys.executable, "-m", "worker", "worker", "--providers", "maast", "--burst"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            timeout=60,
        )
    finally:
        server.close()
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "Redis runs with appendonly no" in err and "set appendonly yes" in err


async def test_an_enqueue_cut_by_a_crash_says_to_run_it_again_and_the_rerun_finishes(
    server: RedisServer, tmp_path: Path, sandbox_url: str
) -> None:
    count = 20_000
    path = tmp_path / "month-end.csv"
    make = [sys.executable, str(ROOT / "samples" / "make_month_end.py"), "--count", str(count)]
    await asyncio.to_thread(
        subprocess.run, [*make, "--invalid", "0", "--out", str(path)], check=True
    )
    env = worker_env(server.url, sandbox_url)
    command = [sys.executable, "-m", "worker", "enqueue", str(path), "--provider", "maast"]
    keys = Keys(settings_of(env).redis_prefix)
    client = aioredis.Redis.from_url(server.url)
    try:
        enqueue = started(command, env)
        # When the host crashes with the enqueue under way,
        while int(await client.hget(keys.totals(), "total") or 0) < 2_000:
            assert enqueue.poll() is None, enqueue.communicate()
            await asyncio.sleep(0.01)
        await asyncio.to_thread(server.crash, 1.0)
        await client.aclose()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.start)
        out, err = await asyncio.to_thread(enqueue.communicate, timeout=120)
        # Then it says so, and to run it again (exit 1: not a usage error),
        assert enqueue.returncode == 1, (out + err).decode()
        print(err.decode())
        assert "run the same command again" in err.decode()
        # and running it again queues every invoice, once.
        again = await asyncio.to_thread(
            subprocess.run, command, env=env, cwd=ROOT, capture_output=True, timeout=120
        )
        assert again.returncode == 0, again.stderr.decode()
        assert "on disk" in again.stdout.decode()
        client = aioredis.Redis.from_url(server.url)
        queued = await client.zcard(keys.queue(Provider.MAAST))
        assert queued == count
    finally:
        await client.aclose()


def started(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def test_a_worker_started_before_its_redis_waits_for_it(
    tmp_path: Path, sandbox: SandboxClient, sandbox_url: str
) -> None:
    server = RedisServer(tmp_path / "redis", appendfsync="always")  # not started yet
    env = worker_env(server.url, sandbox_url)
    try:
        proc = start_worker(env, "--providers", "maast", "--burst")
        assert proc.stderr is not None
        first = b""
        while b"Redis unreachable" not in first:  # it is waiting for Redis
            line = await asyncio.to_thread(proc.stderr.readline)
            assert line, f"the worker exited: {first.decode()}"
            first += line
        await asyncio.to_thread(server.start)
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        server.close()
    log = first.decode() + err.decode()
    assert proc.returncode == 0, log[-3000:]
    assert log.count("Redis unreachable") == 1 and log.count("Redis reachable again") == 1, log
