"""`invoicer status` and `invoicer report`: what operators and finance look at.

Draws a `worker.status.StatusSnapshot` as rich tables (once, live with
`--watch`, or as one JSON object with `--json`), and writes a batch's CSV
report through `worker.report`. Reading Redis is theirs; this module only
parses options, renders and picks exit codes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, TextIO

import redis.asyncio as aioredis
import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table

from jobs.models import Provider
from worker.cli import common
from worker.ledger import State
from worker.report import iso_ms, write_atomically, write_report
from worker.settings import Settings
from worker.status import StatusSnapshot, UnknownBatch, read_status

REFRESH_S = 1.0

_STATE_STYLE = {
    State.QUEUED: "cyan",
    State.SENDING: "blue",
    State.IN_DOUBT: "yellow",
    State.CREATED: "green",
    State.SENT: "green",
    State.REJECTED: "red",
    State.DISCARDED: "dim",
}


def register(app: typer.Typer) -> None:
    """Add `status` and `report` to the app."""
    app.command("status")(status)
    app.command("report")(report)


def status(
    batch: Annotated[str | None, typer.Option(help="Only this batch.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep a live view, refreshed every second.")
    ] = False,
) -> None:
    """Counts per state, queue depth, pauses, dead letters, rate and ETA."""
    s = common.with_redis_url(common.settings(), quiet=as_json, create=False)
    try:
        if watch:
            common.run(watch_status(s, batch, as_json=as_json))
        else:
            snap = common.run(_snapshot_once(s, batch))
            _print(snap, as_json=as_json)
    except UnknownBatch as exc:
        common.fail(str(exc))
    except KeyboardInterrupt:
        # Ctrl-C is how a watching operator leaves: not an error.
        pass
    raise typer.Exit(common.EXIT_OK)


def report(
    batch: Annotated[str, typer.Option(help="The batch to report on.")],
    out: Annotated[
        Path,
        typer.Option("--out", help="CSV file to write ('-': stdout).", callback=common.output_path),
    ],
) -> None:
    """Write one CSV line per invoice of BATCH, in enqueue order."""
    s = common.with_redis_url(common.settings(), create=False)
    try:
        if str(out) == "-":
            rows = common.run(_report(s, batch, sys.stdout))
        else:
            rows = write_atomically(out, lambda fh: common.run(_report(s, batch, fh)))
    except UnknownBatch as exc:
        common.fail(str(exc))
    if str(out) != "-":
        common.err.print(f"wrote {rows} invoices to {out}", highlight=False)


async def watch_status(
    s: Settings, batch: str | None, *, as_json: bool, iterations: int | None = None
) -> None:
    """Refresh the view every second until Ctrl-C (or `iterations` refreshes, for tests).

    With `as_json`, prints one JSON object per line instead (for scripts that
    follow). A Redis outage is shown and retried, not fatal: an operator
    watching a restart should see it come back.
    """
    async with common.redis_client(s) as redis:
        if as_json:
            for _ in _ticks(iterations):
                _print(await _snapshot(redis, s, batch), as_json=True)
                await asyncio.sleep(REFRESH_S)
            return
        with Live(console=common.out, auto_refresh=False) as live:
            for _ in _ticks(iterations):
                try:
                    view: RenderableType = render(await _snapshot(redis, s, batch))
                except RedisConnectionError as exc:
                    view = f"[red]Redis unreachable[/red] ({exc}); retrying every second"
                live.update(view, refresh=True)
                await asyncio.sleep(REFRESH_S)


def _ticks(iterations: int | None) -> Iterable[int]:
    return itertools.count() if iterations is None else range(iterations)


async def _snapshot(redis: aioredis.Redis, s: Settings, batch: str | None) -> StatusSnapshot:
    providers = list(Provider)
    accounts = {p: s.provider(p).account for p in providers}
    return await read_status(
        redis, common.keys(s), batch=batch, providers=providers, accounts=accounts
    )


async def _snapshot_once(s: Settings, batch: str | None) -> StatusSnapshot:
    async with common.redis_client(s) as redis:
        return await _snapshot(redis, s, batch)


async def _report(s: Settings, batch: str, out: TextIO) -> int:
    async with common.redis_client(s) as redis:
        return await write_report(redis, common.keys(s), batch, out)


def _print(snap: StatusSnapshot, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(snap.as_dict()))
    else:
        common.out.print(render(snap))


def render(snap: StatusSnapshot) -> RenderableType:
    """The status view: states, providers and a summary line."""
    return Group(_states_table(snap), _providers_table(snap), _summary(snap))


def _states_table(snap: StatusSnapshot) -> Table:
    title = "all invoices"
    if snap.batch is not None:
        b = snap.batch
        title = f"batch {b.batch_id}" + (f" ({b.name})" if b.name else "")
        if b.created_at_ms is not None:
            title += f", created {iso_ms(b.created_at_ms)}"
    table = Table(title=title, title_justify="left")
    table.add_column("state")
    table.add_column("invoices", justify="right")
    table.add_column("share", justify="right")
    for state in State:
        count = snap.counts[state]
        share = f"{100 * count / snap.total:.1f}%" if snap.total else "-"
        table.add_row(f"[{_STATE_STYLE[state]}]{state.value}[/]", str(count), share)
    table.add_row("[bold]total[/]", f"[bold]{snap.total}[/]", "")
    return table


def _providers_table(snap: StatusSnapshot) -> Table:
    table = Table(title="providers", title_justify="left")
    for name in ("provider", "account", "due", "deferred", "done/min", "paused"):
        table.add_column(
            name, justify="right" if name in ("due", "deferred", "done/min") else "left"
        )
    for p in snap.providers:
        paused = "[green]no[/]"
        if p.paused:
            until = (
                "until resumed"
                if p.paused_until_ms is None
                else f"until {iso_ms(p.paused_until_ms)}"
            )
            paused = f"[red]yes[/]: {p.paused_reason} ({until})"
        table.add_row(
            p.provider.value,
            p.account,
            str(p.due),
            str(p.deferred),
            str(p.finished_last_minute),
            paused,
        )
    return table


def _summary(snap: StatusSnapshot) -> str:
    line = (
        f"remaining {snap.remaining}  ·  rate {snap.rate_per_minute:.0f}/min  ·  "
        f"ETA {format_eta(snap.eta_s)}  ·  dead letters {snap.dead_letters}"
    )
    if snap.refused_jobs:
        line += f"  ·  [yellow]refused jobs {snap.refused_jobs}[/] (invoicer refused list)"
    return line


def format_eta(eta_s: float | None) -> str:
    """`1h02m`, `4m10s`, `12s`, `done`, or `-` when nothing is moving."""
    if eta_s is None:
        return "-"
    if eta_s <= 0:
        return "done"
    seconds = round(eta_s)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
