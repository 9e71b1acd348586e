"""Goal `web`: the operator endpoints stay as fast with 100,000 invoices in a batch as with 100.

Ours: a 100,000-invoice batch enqueued (the real intake path) into a
flushed db, then `REQUESTS` requests to each endpoint, in-process over ASGI
(httpx2's transport: the app's whole server-side work, no socket), timed
one by one: p50 and p99. Endpoints: the overview data (`/metrics`, which
reads everything the overview shows, and `/v1/providers`), the batch status
(`GET /v1/batches/{id}`) and the worker list. Baseline, same run, same
process: the same requests with a 100-invoice batch. Target: p99 with
100,000 at most twice the baseline's p99 plus 5 ms (no endpoint grows with
the batch), and under 50 ms.
"""

from __future__ import annotations

import time

import httpx2
import redis.asyncio as aioredis

from bench.common import Bench, Goal, median, percentile, sample_csv
from jobs.models import Provider
from worker import api
from worker.settings import load_settings
from worker.web import create_app

INVOICES = 100_000
SMALL = 100
REQUESTS = 300
TOKEN = "bench-admin-token-0000001"
TARGET_P99_MS = 50.0


async def _timings(bench: Bench, invoices: int) -> dict[str, tuple[float, float]]:
    """p50 and p99 (ms) per endpoint with a batch of `invoices` in Redis."""
    bench.flush()
    settings = load_settings(
        {"INVOICER_REDIS_URL": bench.redis_url, "INVOICER_ADMIN_TOKEN": TOKEN}, env_file=None
    )
    redis = aioredis.Redis.from_url(bench.redis_url)
    try:
        report = await api.enqueue_file(
            sample_csv(bench, invoices), provider=Provider.MAAST, settings=settings, redis=redis
        )
        app = create_app(settings, redis)
        transport = httpx2.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        paths = {
            "overview /metrics": "/metrics",
            "overview /v1/providers": "/v1/providers",
            "batch status /v1/batches/{id}": f"/v1/batches/{report.batch_id}",
            "workers /v1/workers": "/v1/workers",
        }
        found = {}
        async with httpx2.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=headers
        ) as client:
            for name, path in paths.items():
                found[name] = await _measure(client, path)
        return found
    finally:
        await redis.aclose()


async def _measure(client: httpx2.AsyncClient, path: str) -> tuple[float, float]:
    for _ in range(20):  # warm up (scripts loaded, connections open)
        (await client.get(path)).raise_for_status()
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = await client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return median(times), percentile(times, 99)


async def run(bench: Bench) -> Goal:
    """Measure both sizes; compare p99s endpoint by endpoint."""
    small = await _timings(bench, SMALL)
    large = await _timings(bench, INVOICES)
    bench.flush()
    worst = max(large[n][1] - (2 * small[n][1] + 5.0) for n in large)
    slowest = max(p99 for _, p99 in large.values())
    notes = tuple(
        f"{name}: p50 {large[name][0]:.2f} ms, p99 {large[name][1]:.2f} ms "
        f"(100 invoices: p50 {small[name][0]:.2f}, p99 {small[name][1]:.2f})"
        for name in large
    )
    return Goal(
        name="web",
        value=f"slowest p99 {slowest:.1f} ms with {INVOICES:,} invoices",
        target=f"p99 <= 2 x the {SMALL}-invoice p99 + 5 ms, and < {TARGET_P99_MS:.0f} ms",
        passed=worst <= 0 and slowest < TARGET_P99_MS,
        baseline=f"the same requests with a {SMALL}-invoice batch, same run",
        notes=(*notes, f"{REQUESTS} requests per endpoint, in-process ASGI"),
    )
