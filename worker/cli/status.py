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
from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from jobs.models import Provider
from worker.cli import common
from worker.enqueue import slug
from worker.keys import account_name
from worker.ledger import State
from worker.report import duplicate_counts, write_atomically, write_report
from worker.settings import Settings
from worker.status import ProviderStatus, StatusSnapshot, UnknownBatch, read_status
from worker.times import local_ms

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
    voided, left_open = common.run(_duplicates(s, batch))
    twins = f"duplicates voided {voided}, open {left_open}"
    if str(out) != "-":
        common.err.print(f"wrote {rows} invoices to {out} ({twins})", highlight=False)
    else:
        common.err.print(twins, highlight=False)


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


async def _duplicates(s: Settings, batch: str) -> tuple[int, int]:
    async with common.redis_client(s) as redis:
        return await duplicate_counts(redis, common.keys(s), batch)


async def _report(s: Settings, batch: str, out: TextIO) -> int:
    async with common.redis_client(s) as redis:
        return await write_report(redis, common.keys(s), batch, out)


def _print(snap: StatusSnapshot, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(snap.as_dict()))
    else:
        common.out.print(render(snap))


def render(snap: StatusSnapshot) -> RenderableType:
    """The status view: a heading, the states, the provider accounts, a summary line.

    Sized for 80 columns and up: the states run across (one column each), the
    heading is a line of its own (a table title would wrap to the table's
    width), and no table is wider than the terminal.
    """
    return Group(_heading(snap), _states_table(snap), _providers_table(snap), _summary(snap))


def _heading(snap: StatusSnapshot) -> Text:
    if snap.batch is None:
        heading = Text("all invoices", style="bold")
    else:
        b = snap.batch
        heading = Text(f"batch {b.batch_id}", style="bold")
        if b.name and not b.batch_id.startswith(slug(b.name)):
            heading += f" ({b.name})"  # an id made from its name says it already
        if b.provider:
            heading += f" for {b.provider}" + ("" if b.account == "default" else f"@{b.account}")
        if b.created_at_ms is not None:
            heading += f", created {local_ms(b.created_at_ms)}"
    return heading


def _states_table(snap: StatusSnapshot) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    columns: list[tuple[str, int, str]] = [
        (state.value, snap.counts[state], _STATE_STYLE[state]) for state in State
    ]
    if snap.batch is not None and snap.batch.superseded:
        columns.append(("superseded", snap.batch.superseded, "dim"))
    columns.append(("total", snap.total, "bold"))
    for name, _, style in columns:
        table.add_column(Text(name, style=style), justify="right")
    table.add_row(*(f"{count:,}" for _, count, _ in columns))
    if snap.total:
        table.add_row(
            *(f"{100 * count / snap.total:.0f}%" for _, count, _ in columns[:-1]), "", style="dim"
        )
    return table


def _providers_table(snap: StatusSnapshot) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in ("provider", "remaining", "due", "deferred", "done/min", "ETA", "paused"):
        table.add_column(name, justify="left" if name in ("provider", "paused") else "right")
    for p in snap.providers:
        paused = Text("no", style="green")
        if p.paused:
            until = (
                f"until {local_ms(p.paused_until_ms)}"
                if p.paused_until_ms is not None
                else "until it answers"
                if p.paused_kind == "unreachable"
                else "until resumed"
            )
            paused = Text("yes", style="red") + f": {p.paused_reason} ({until})"
        table.add_row(
            account_name(p.provider, p.account),
            f"{p.remaining:,}",
            f"{p.due:,}",
            f"{p.deferred:,}",
            f"{p.finished_last_minute:,}",
            "paused" if p.paused and p.remaining else format_eta(p.eta_s),
            paused,
        )
    return table


def _summary(snap: StatusSnapshot) -> Text:
    if snap.total == 0:
        # Said plainly: an empty Redis is not "everything done".
        line = Text("nothing enqueued here yet  ·  dead letters " + f"{snap.dead_letters:,}")
    else:
        eta = format_eta(snap.eta_s)
        held = snap.held_up
        if snap.eta_s is None and held:
            eta += " (" + ", ".join(_held(p) for p in held) + ")"
        line = Text(
            f"remaining {snap.remaining:,}  ·  rate {snap.rate_per_minute:,.0f}/min  ·  "
            f"ETA {eta}  ·  dead letters {snap.dead_letters:,}"
        )
    if snap.refused_jobs:
        line += "  ·  "
        line += Text(f"refused jobs {snap.refused_jobs:,}", style="yellow")
        line += " (invoicer refused list)"
    # Exactly-once at work (docs/operations.md): shown once there is something to show.
    if snap.unverified or snap.voided:
        line += f"\nunverified {snap.unverified:,}  ·  duplicates voided {snap.voided:,}"
    if snap.duplicates_open:
        line += "\n"
        line += Text(f"duplicates open {snap.duplicates_open:,}", style="red")
        line += ": sent or paid twins a person must handle (invoicer duplicates list)"
    return line


def _held(p: ProviderStatus) -> str:
    who = account_name(p.provider, p.account)
    return f"{who} paused" if p.paused else f"{who}: no progress in the last minute"


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
