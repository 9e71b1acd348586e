"""`invoicer refused`: the jobs workers refused to run, and why (`worker.refused`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from worker.cli import common
from worker.refused import RefusedJob, clear_refused, refused_jobs
from worker.times import iso_ms

refused_app = typer.Typer(
    name="refused",
    help="Jobs no worker may run (malformed, not ours, for no known invoice): listed, never run.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the `refused` command group to the app."""
    app.add_typer(refused_app, name="refused")


@refused_app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List refused jobs, newest first: the job id, the queue, why, what it held.

    A refused job that named an invoice of ours also dead-lettered that
    invoice (reason refused_job): `invoicer dlq requeue KEY` writes it a
    fresh job. Nothing else needs doing; `invoicer refused clear` empties
    the list once read.
    """
    s = common.with_redis_url(common.settings(), quiet=as_json)

    async def read() -> list[RefusedJob]:
        async with common.redis_client(s) as redis:
            return await refused_jobs(redis, common.keys(s), limit=limit)

    entries = common.run(read())
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries]))
        return
    table = Table(title=f"refused jobs ({len(entries)} shown)", title_justify="left")
    for name in ("at", "job id", "why", "invoice", "held"):
        table.add_column(name, overflow="fold", no_wrap=name == "at")
    for e in entries:
        invoice = e.invoice_key or "-"
        if e.dead_lettered:
            invoice += " (dead-lettered)"
        table.add_row(iso_ms(e.at_ms), e.job_id, e.reason, invoice, e.body[:120])
    common.out.print(table)


@refused_app.command("clear")
def clear() -> None:
    """Empty the refused-jobs list (the jobs themselves are already gone)."""
    s = common.with_redis_url(common.settings())

    async def go() -> int:
        async with common.redis_client(s) as redis:
            return await clear_refused(redis, common.keys(s))

    common.out.print(f"cleared {common.run(go())} refused job(s)")
