"""Goal `enqueue`: 100,000 CSV invoices validated and enqueued, against arq's per-job enqueue.

Ours: `invoicer enqueue FILE --provider maast --json` in a child process,
timed wall-clock from spawn to exit (imports, parsing, validation, Redis
included); its peak RSS comes from `os.wait4`, for that child alone.
Baseline: arq's `ArqRedis.enqueue_job` awaited once per invoice (JSON
serializer, the invoice's JSON as the payload) over a `BASELINE_SAMPLE`
sample, in this process, with CSV parsing done beforehand (not timed):
a rate, extrapolated. Both on a flushed db.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from arq.connections import RedisSettings, create_pool

from bench.common import Bench, Goal, child_env, sample_csv
from jobs.models import Provider
from jobs.sources import Record, read_invoices
from worker.arq_job import serialize_job
from worker.keys import Keys

INVOICES = 100_000
BASELINE_SAMPLE = 10_000
TARGET_SPEEDUP = 5.0
TARGET_RSS_MB = 150.0
TIMEOUT_S = 600.0


async def baseline_rate(bench: Bench, path: Path) -> float:
    """Invoices/s of one awaited `enqueue_job` per invoice."""
    bench.flush()
    payloads = []
    for item in read_invoices(path):
        if isinstance(item, Record):
            payloads.append((item.invoice.number, item.invoice.model_dump(mode="json")))
        if len(payloads) == BASELINE_SAMPLE:
            break
    pool = await create_pool(RedisSettings.from_dsn(bench.redis_url), job_serializer=serialize_job)
    queue = Keys().queue(Provider.MAAST)
    try:
        started = time.perf_counter()
        for number, invoice in payloads:
            await pool.enqueue_job("create_invoice_job", invoice, _job_id=number, _queue_name=queue)
        elapsed_s = time.perf_counter() - started
    finally:
        await pool.aclose()
    return len(payloads) / elapsed_s


def ours(bench: Bench, path: Path) -> tuple[float, float]:
    """Invoices/s and peak RSS (MB) of `invoicer enqueue` in a child process."""
    bench.flush()
    command = [sys.executable, "-m", "worker", "enqueue", str(path), "--provider", "maast"]
    started = time.perf_counter()
    child = subprocess.Popen(
        [*command, "--json"],
        cwd=bench.workdir,
        env=child_env(bench, {}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # wait4, not wait: the rusage of this child alone (RUSAGE_CHILDREN would
    # report the largest child ever waited for, e.g. a sandbox).
    _, status, usage = os.wait4(child.pid, 0)
    elapsed_s = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"invoicer enqueue exited {child.returncode}")
    return INVOICES / elapsed_s, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


async def run(bench: Bench) -> Goal:
    """Baseline on a sample, then ours on the whole file."""
    path = sample_csv(bench, INVOICES)
    base = await baseline_rate(bench, path)
    rate, rss_mb = ours(bench, path)
    speedup = rate / base
    return Goal(
        name="enqueue",
        value=f"{speedup:.1f} x enqueue_job ({rate:,.0f} invoices/s), peak RSS {rss_mb:.0f} MB",
        target=f">= {TARGET_SPEEDUP:.0f} x, peak RSS <= {TARGET_RSS_MB:.0f} MB",
        passed=speedup >= TARGET_SPEEDUP and rss_mb <= TARGET_RSS_MB,
        baseline=f"enqueue_job per invoice {base:,.0f}/s ({BASELINE_SAMPLE:,}-invoice sample)",
        notes=(
            f"ours: {INVOICES:,} invoices in {INVOICES / rate:.1f} s wall, "
            "process start to exit (CSV parse + validation + Redis)",
        ),
    )
