"""Goal `overhead`: our whole pipeline against arq's own no-op drain, one process each.

Ours: N invoices enqueued in bulk, one `invoicer worker --burst` process,
the sandbox at 0 ms latency and no limit; timed from worker start (after
imports) to the sandbox's creation of the last invoice. Baseline: N no-op
jobs enqueued with arq's `enqueue_job`, drained by a plain arq `Worker` with
the same options (poll delay, max_jobs, JSON serializer, keep_result) in
burst mode; timed from worker start to the last job run. Both take the
median of `REPEATS` alternating runs.
"""

from __future__ import annotations

from bench import pipeline
from bench.child import NOOP_FUNCTION
from bench.common import Bench, Goal, median, sample_csv, spawn
from sandbox.config import SandboxConfig
from sandbox.server import running_sandbox

INVOICES = 3_000
REPEATS = 3
TARGET_RATIO = 0.5
TIMEOUT_S = 180.0


async def arq_noop_rate(bench: Bench, env: dict[str, str]) -> float:
    """Jobs/s of arq's own worker draining `INVOICES` no-op jobs."""
    bench.flush()
    await pipeline.enqueue_noops(bench, INVOICES, NOOP_FUNCTION)
    child = spawn(bench, ["-m", "bench.child", "arq-noop"], env)
    out, _ = child.communicate(timeout=TIMEOUT_S)
    doc = pipeline.first_json(out)
    if doc["done"] != INVOICES:
        raise RuntimeError(f"arq ran {doc['done']} of {INVOICES} no-op jobs")
    return INVOICES / (doc["last"] - doc["t_start"])


async def pipeline_rate(bench: Bench, env: dict[str, str], sandbox_url: str) -> float:
    """Invoices/s of the pipeline: `INVOICES` enqueued, then worker start to last creation."""
    bench.flush()
    await pipeline.reset_sandbox(sandbox_url)
    await pipeline.enqueue_file(bench, env, sample_csv(bench, INVOICES))
    (t_start,) = pipeline.run_burst_workers(bench, env, 1, TIMEOUT_S)
    created = await pipeline.created_at(sandbox_url)
    if len(created) != INVOICES:
        raise RuntimeError(f"the sandbox holds {len(created)} of {INVOICES} invoices")
    return INVOICES / (max(created.values()) - t_start)


async def run(bench: Bench) -> Goal:
    """Measure both, `REPEATS` times, alternating; compare medians."""
    ours: list[float] = []
    arq: list[float] = []
    with running_sandbox(SandboxConfig()) as sandbox_url:
        env = pipeline.maast_env(sandbox_url)
        for _ in range(REPEATS):
            arq.append(await arq_noop_rate(bench, env))
            ours.append(await pipeline_rate(bench, env, sandbox_url))
    ratio = median(ours) / median(arq)
    return Goal(
        name="overhead",
        value=f"{ratio:.2f} x arq ({median(ours):,.0f} invoices/s)",
        target=f">= {TARGET_RATIO} x arq no-op drain",
        passed=ratio >= TARGET_RATIO,
        baseline=f"arq no-op drain {median(arq):,.0f} jobs/s (same options, 1 process)",
        notes=(
            f"{INVOICES:,} jobs per run, median of {REPEATS}; "
            f"ours {_runs(ours)}, arq {_runs(arq)} per s",
        ),
    )


def _runs(rates: list[float]) -> str:
    return "/".join(f"{r:,.0f}" for r in rates)
