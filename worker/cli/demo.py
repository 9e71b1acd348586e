"""`invoicer demo` (what `make demo` runs): a month-end run, end to end, locally.

Everything is embedded: its own Redis in `.invoicer/demo/` (flushed first,
so the demo can be run again), the provider sandbox with modest faults (500s,
timeouts and dropped connections after the invoice was stored), the
checkout's `samples/month-end.csv` (1,000 invoices, a few invalid; not in the
wheel: an installed copy needs `--file`), and workers in this process. It
ends with a summary read back from the sandbox: the proof is that it holds
every valid invoice exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import redis.asyncio as aioredis
import typer
from pydantic import SecretStr
from rich.live import Live
from rich.text import Text

from jobs.models import Provider
from jobs.sources import read_invoices
from sandbox.client import SandboxClient
from sandbox.config import DEFAULT_MAAST_KEY, Faults, SandboxConfig
from sandbox.server import running_sandbox
from worker import api, embedded
from worker.app import run_workers
from worker.cli import common, demo_serve
from worker.cli.status import render
from worker.dlq import DeadLetters
from worker.enqueue import EnqueueReport
from worker.keys import Keys
from worker.settings import Settings
from worker.status import read_status

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "month-end.csv"
"""The month-end sample of a source checkout (`make demo` runs from one)."""
DEMO_FAULTS = Faults(
    seed=2026,
    latency_ms=15,
    latency_jitter_ms=20,
    error_before_commit=0.02,
    error_after_commit=0.01,
    timeout_after_commit=0.01,
    drop_after_commit=0.01,
    hold_s=3.0,
)


def register(app: typer.Typer) -> None:
    """Add `demo` to the app."""
    app.command("demo")(demo)


def demo(
    file: Annotated[Path, typer.Option(help="Invoices to run.")] = SAMPLE,
    rate_per_minute: Annotated[
        float, typer.Option(min=1, help="Shared Maast limit for the run.")
    ] = 6000,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Keep the dashboard up on the demo's data until Ctrl-C, then stop."
        ),
    ] = False,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="The dashboard's port with --serve (0: any).")
    ] = 8000,
) -> None:
    """Run a month-end batch against the local sandbox and prove it exactly-once."""
    if not file.is_file():
        common.fail(
            f"no invoice file at {file}: pass --file (the sample is in a checkout's samples/)"
        )
    # The live view and the summary are the demo's output: the retries of the
    # faults it injects on purpose would bury them (the summary counts them).
    logging.getLogger("invoicer").setLevel(logging.ERROR)
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    base = common.settings()
    data_dir = base.data_dir / "demo"
    sock = demo_serve.listening_socket(port) if serve else None  # a busy port fails first
    url, started = embedded.ensure_running(data_dir)
    common.err.print(f"embedded Redis for the demo in {data_dir}/ (AOF on)", highlight=False)
    config = SandboxConfig(faults=DEMO_FAULTS)
    try:
        with running_sandbox(config) as sandbox_url:
            s = _demo_settings(base, url, sandbox_url, rate_per_minute)
            common.err.print(f"provider sandbox on {sandbox_url} with faults {_faults_line()}")
            run = (
                _run(s, file, sandbox_url) if sock is None else _serving(s, file, sandbox_url, sock)
            )
            failed, batch_id, dead_key = common.run(run)
    except demo_serve.Interrupted:
        common.err.print("stopped before the run finished (Ctrl-C); nothing is left running")
        raise typer.Exit(130) from None
    finally:
        if serve and started:
            embedded.stop(data_dir)  # --serve stops everything it started
    if serve:
        common.err.print("dashboard, sandbox and the demo's Redis stopped")
    else:
        _next_steps(data_dir, batch_id, dead_key)
    raise typer.Exit(common.EXIT_SOME_FAILED if failed else common.EXIT_OK)


async def _serving(
    s: Settings, file: Path, sandbox_url: str, sock: socket.socket
) -> tuple[bool, str, str | None]:
    """The run with the dashboard up, which stays up until Ctrl-C."""
    async with demo_serve.dashboard(s, sock) as url:
        common.err.print(f"dashboard on {url} (live while the demo runs)", highlight=False)

        def still_serving(result: tuple[bool, str, str | None]) -> None:
            common.out.print(
                f"\nThe dashboard shows the demo's data at {url}batches/{result[1]}\n"
                "Ctrl-C stops the dashboard, the sandbox and the demo's Redis.",
                highlight=False,
                soft_wrap=True,
            )

        return await demo_serve.until_stopped(
            lambda on_signal: _run(s, file, sandbox_url, on_signal=on_signal),
            still_serving,
            grace_s=s.shutdown_wait_s + 5.0,
        )


def _demo_settings(base: Settings, redis_url: str, sandbox_url: str, rate: float) -> Settings:
    maast = base.maast.model_copy(
        update={
            "base_url": sandbox_url,
            "api_key": SecretStr(DEFAULT_MAAST_KEY),
            "account": "default",
            "rate_per_minute": rate,
            "connect_timeout_s": 1.0,
            "read_timeout_s": 1.0,
        }
    )
    retry = base.retry.model_copy(update={"backoff_base_s": 0.2, "backoff_cap_s": 2.0})
    return base.model_copy(
        update={
            "redis_url": SecretStr(redis_url),
            "redis_prefix": "invoicer:",
            "maast": maast,
            "retry": retry,
            "lease_s": 3.0,
            # The shortest window the settings accept for these timeouts (a
            # local sandbox answers at once or never): an invoice in doubt
            # waits it out, then is looked up again (docs/operations.md).
            "landing_window_s": 7.0,
        }
    )


def _faults_line() -> str:
    f = DEMO_FAULTS
    return (
        f"(latency {f.latency_ms:.0f}+{f.latency_jitter_ms:.0f} ms; per create: "
        f"{f.error_before_commit:.0%} 500 before commit, {f.error_after_commit:.0%} 500 after, "
        f"{f.timeout_after_commit:.0%} timeout after, {f.drop_after_commit:.0%} dropped after)"
    )


async def _run(
    s: Settings, file: Path, sandbox_url: str, *, on_signal: Callable[[], None] | None = None
) -> tuple[bool, str, str | None]:
    assert s.redis_url is not None
    redis = aioredis.Redis.from_url(s.redis_url.get_secret_value())
    try:
        await redis.flushdb()
        report = await api.enqueue_invoices(
            read_invoices(file), provider=Provider.MAAST, batch="demo month-end", settings=s
        )
        _print_enqueued(report, file)
        await _work_with_live_view(s, redis, report.batch_id, on_signal)
        failed = await _summary(s, redis, report, sandbox_url)
        first_dead = await DeadLetters(redis, Keys(s.redis_prefix)).list(limit=1)
        return failed, report.batch_id, first_dead[0].invoice_key if first_dead else None
    finally:
        await redis.aclose()


async def _work_with_live_view(
    s: Settings, redis: aioredis.Redis, batch: str, on_signal: Callable[[], None] | None
) -> None:
    keys = Keys(s.redis_prefix)
    work = asyncio.create_task(run_workers(s, [Provider.MAAST], burst=True, on_signal=on_signal))
    # Live redraws in place on a terminal (and draws once, at the end, on
    # anything else); a line written around it would leave a copy of the
    # view behind, so log lines go through it while it is up.
    with (
        Live(console=common.out, refresh_per_second=4, transient=False) as live,
        _logs_through_live(),
    ):
        while not work.done():
            snap = await read_status(
                redis, keys, batch=batch, providers=[Provider.MAAST], accounts={}
            )
            live.update(render(snap))
            await asyncio.wait({work}, timeout=0.25)
        live.update(
            render(
                await read_status(redis, keys, batch=batch, providers=[Provider.MAAST], accounts={})
            )
        )
    await work


async def _summary(
    s: Settings, redis: aioredis.Redis, report: EnqueueReport, sandbox_url: str
) -> bool:
    keys = Keys(s.redis_prefix)
    async with SandboxClient(sandbox_url) as sandbox:
        counts = await sandbox.created_counts("maast")
        events = await sandbox.fault_events()
    duplicates = {n: c for n, c in counts.items() if c > 1}
    dead = await DeadLetters(redis, keys).list(limit=10_000)
    by_reason = collections.Counter(d.reason for d in dead)
    snap = await read_status(
        redis, keys, batch=report.batch_id, providers=[Provider.MAAST], accounts={}
    )
    reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(by_reason.items()))
    rows = [
        ("records in the file", f"{report.records:,}", ""),
        ("  invalid, reported", f"{report.invalid_records:,}", "kept out, dead-lettered"),
        ("  enqueued", f"{report.accepted:,}", ""),
        ("created at the sandbox", f"{len(counts):,}", f"ledger: {_created(snap):,} created"),
        ("faults the sandbox injected", f"{len(events):,}", ""),
        ("dead-lettered", f"{len(dead):,}", reasons),
        ("still waiting", f"{snap.remaining:,}", ""),
        ("duplicates at the provider", f"{len(duplicates):,}", "must be 0"),
    ]
    common.out.print()
    common.out.rule("summary")
    for label, value, note in rows:
        style = "bold red" if label.startswith("duplicates") and duplicates else ""
        line = f"{label:<30}{value:>8}   {note}".rstrip()
        common.out.print(line, style=style, highlight=False, markup=False)
    return bool(duplicates) or snap.remaining > 0


def _print_enqueued(report: EnqueueReport, file: Path) -> None:
    """What went in, and the invalid records it kept out, each with its problem."""
    common.out.print(
        f"enqueued {report.accepted:,} invoices from {file.name}; "
        f"{report.invalid_records:,} invalid records kept out and dead-lettered:",
        highlight=False,
        soft_wrap=True,
    )
    for problem in report.invalid:
        common.out.print(Text(f"  {problem}"), highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _logs_through_live() -> Iterator[None]:
    """Log handlers writing to the current sys.stderr: inside a `Live` on a
    terminal, rich's proxy, which prints above the view instead of through it."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    before = [h.stream for h in handlers]
    for handler in handlers:
        handler.setStream(sys.stderr)  # rich's proxy while a terminal shows the view
    try:
        yield
    finally:
        for handler, stream in zip(handlers, before, strict=True):
            handler.setStream(stream)


def _created(snap: object) -> int:
    from worker.ledger import State
    from worker.status import StatusSnapshot

    assert isinstance(snap, StatusSnapshot)
    return snap.counts[State.CREATED] + snap.counts[State.SENT]


def _next_steps(data_dir: Path, batch_id: str, dead_key: str | None) -> None:
    env = f"INVOICER_DATA_DIR={data_dir}"
    common.out.print(
        f"\nbatch {batch_id}. Look around (the demo's Redis keeps running):\n"
        f"  {env} .venv/bin/invoicer status --batch {batch_id}\n"
        f"  {env} .venv/bin/invoicer dlq list\n"
        f"  {env} .venv/bin/invoicer dlq show {dead_key or 'KEY'}\n"
        f"  {env} .venv/bin/invoicer report --batch {batch_id} --out demo.csv\n"
        f"  {env} .venv/bin/invoicer redis stop\n"
        f"\nOpen the dashboard on the demo's data (then http://127.0.0.1:8000/):\n"
        f"  {env} .venv/bin/invoicer web",
        highlight=False,
        soft_wrap=True,
    )
