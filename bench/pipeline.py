"""Driving the real pipeline from a goal: settings, bulk enqueue, workers, sandbox reads.

The goals' shared steps against the product's public faces (`api.enqueue_invoices`,
`invoicer worker` in child processes, the sandbox's inspection API). It never
judges a figure.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

from arq.connections import RedisSettings, create_pool

from bench.common import Bench, maast_epoch_s, spawn
from jobs.models import Provider
from jobs.sources import read_invoices
from sandbox.client import SandboxClient
from sandbox.config import DEFAULT_MAAST_KEY
from worker import api
from worker.arq_job import serialize_job
from worker.enqueue import EnqueueReport
from worker.keys import Keys
from worker.settings import Settings, load_settings

WORKER_ARGS = ("-m", "bench.child", "invoicer", "worker", "--providers", "maast")


def maast_env(sandbox_url: str, **extra: str) -> dict[str, str]:
    """Child settings that point Maast at the sandbox (no rate limit unless given)."""
    return {"MAAST_BASE_URL": sandbox_url, "MAAST_API_KEY": DEFAULT_MAAST_KEY, **extra}


def settings_for(bench: Bench, env: Mapping[str, str]) -> Settings:
    """The settings a child with `env` would load, for in-process steps."""
    environ = {"INVOICER_REDIS_URL": bench.redis_url, **env}
    return load_settings(environ=environ, env_file=None)


async def enqueue_file(bench: Bench, env: Mapping[str, str], path: Path) -> EnqueueReport:
    """Validate and enqueue every invoice of `path` for Maast (the Python API)."""
    settings = settings_for(bench, env)
    report = await api.enqueue_invoices(
        read_invoices(path), provider=Provider.MAAST, batch="bench", settings=settings
    )
    if not report.ok:
        raise RuntimeError(f"the bench's own sample was refused: {report.as_dict()}")
    return report


async def enqueue_noops(bench: Bench, count: int, job: str) -> None:
    """`count` jobs of function `job` on the Maast queue, with arq's own `enqueue_job`."""
    pool = await create_pool(RedisSettings.from_dsn(bench.redis_url), job_serializer=serialize_job)
    queue = Keys().queue(Provider.MAAST)
    try:
        # Not timed: concurrent calls only make the set-up quick.
        for start in range(0, count, 100):
            await asyncio.gather(
                *(
                    pool.enqueue_job(job, i, _job_id=f"noop-{i}", _queue_name=queue)
                    for i in range(start, min(start + 100, count))
                )
            )
    finally:
        await pool.aclose()


def run_burst_workers(
    bench: Bench, env: Mapping[str, str], processes: int, timeout_s: float
) -> list[float]:
    """Run `processes` burst workers to the end; their start times (epoch s)."""
    children = [spawn(bench, [*WORKER_ARGS, "--burst"], env) for _ in range(processes)]
    starts: list[float] = []
    for child in children:
        try:
            out, _ = child.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise RuntimeError(f"a burst worker did not finish in {timeout_s} s") from None
        if child.returncode != 0:
            raise RuntimeError(f"a worker exited {child.returncode} (see children.log)")
        starts.append(first_json(out)["t_start"])
    return starts


def first_json(out: str) -> dict[str, float]:
    """The first JSON line a child printed."""
    for line in out.splitlines():
        if line.startswith("{"):
            doc: dict[str, float] = json.loads(line)
            return doc
    raise RuntimeError(f"no JSON line in the child's output: {out[:200]!r}")


async def created_at(sandbox_url: str) -> dict[str, float]:
    """Invoice number -> when the sandbox created it (epoch s, ms resolution)."""
    async with SandboxClient(sandbox_url) as sandbox:
        docs = await sandbox.invoices("maast")
    return {str(d["invoice_number"]): maast_epoch_s(str(d["db_timestamp"])) for d in docs}


async def busiest_second(sandbox_url: str) -> int:
    """The most Maast requests the sandbox saw in any sliding one-second window."""
    async with SandboxClient(sandbox_url) as sandbox:
        stats = await sandbox.stats()
    providers = stats["providers"]
    assert isinstance(providers, dict)
    return int(providers["maast"]["busiest_second"]["count"])


async def reset_sandbox(sandbox_url: str) -> None:
    """Forget every invoice and count at the sandbox."""
    async with SandboxClient(sandbox_url) as sandbox:
        await sandbox.reset()
