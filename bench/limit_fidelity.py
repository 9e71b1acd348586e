"""Goal `limit_fidelity`: four worker processes share one 50/s Maast budget.

`INVOICES` invoices (enough for more than `WINDOW_S` of work at the limit)
are enqueued, then four `invoicer worker --burst` processes run with
MAAST_RATE_PER_MINUTE=3000 against the sandbox at 100 ms latency. Achieved
rate: creations in the steady `WINDOW_S` window that starts one second after
the first creation (the sandbox's own timestamps). Safety: the sandbox's
busiest sliding one-second window over the whole run must not exceed the
limit. The reference beside it is the limit itself (50/s): without the
shared Redis budget, four processes each pacing themselves at 50/s would
send about 200/s.
"""

from __future__ import annotations

from bench import pipeline
from bench.common import Bench, Goal, sample_csv
from sandbox.config import Faults, SandboxConfig
from sandbox.server import running_sandbox

LIMIT_PER_S = 50
PROCESSES = 4
LATENCY_MS = 100.0
WINDOW_S = 30.0
WARMUP_S = 1.0
INVOICES = 1_650
"""About 33 s at the limit (less the 2% safety margin): the window plus a margin."""
TARGET_FRACTION = 0.97
TIMEOUT_S = 120.0


def steady_rate(created: list[float]) -> float:
    """Creations per second in [first + WARMUP_S, first + WARMUP_S + WINDOW_S)."""
    start = min(created) + WARMUP_S
    inside = [t for t in created if start <= t < start + WINDOW_S]
    return len(inside) / WINDOW_S


async def run(bench: Bench) -> Goal:
    """Run the four processes to the end, then read the sandbox's clock."""
    bench.flush()
    config = SandboxConfig(faults=Faults(latency_ms=LATENCY_MS))
    with running_sandbox(config) as sandbox_url:
        env = pipeline.maast_env(sandbox_url, MAAST_RATE_PER_MINUTE=str(LIMIT_PER_S * 60))
        await pipeline.enqueue_file(bench, env, sample_csv(bench, INVOICES))
        pipeline.run_burst_workers(bench, env, PROCESSES, TIMEOUT_S)
        created = await pipeline.created_at(sandbox_url)
        busiest = await pipeline.busiest_second(sandbox_url)
    if len(created) != INVOICES:
        raise RuntimeError(f"the sandbox holds {len(created)} of {INVOICES} invoices")
    rate = steady_rate(list(created.values()))
    fraction = rate / LIMIT_PER_S
    overall = INVOICES / (max(created.values()) - min(created.values()))
    return Goal(
        name="limit_fidelity",
        value=f"{fraction:.3f} of the limit ({rate:.1f}/s), busiest second {busiest}",
        target=f">= {TARGET_FRACTION} of {LIMIT_PER_S}/s, busiest second <= {LIMIT_PER_S}",
        passed=fraction >= TARGET_FRACTION and busiest <= LIMIT_PER_S,
        baseline=(
            f"the limit itself, {LIMIT_PER_S}/s (per-process pacing alone would allow "
            f"{PROCESSES} x {LIMIT_PER_S} = {PROCESSES * LIMIT_PER_S}/s)"
        ),
        notes=(
            f"{PROCESSES} processes, latency {LATENCY_MS:.0f} ms, steady window {WINDOW_S:.0f} s; "
            f"whole run {overall:.1f}/s over {INVOICES:,} invoices",
        ),
    )
