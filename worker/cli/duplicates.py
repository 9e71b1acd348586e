"""`invoicer duplicates`: the operator list of duplicates that could not be voided.

The operator's side of `worker.duplicates.Duplicates`: a late twin of an
invoice that was sent or paid stays live at the provider, and a person must
credit or cancel it there (docs/operations.md, "The operator list"). This
module lists the entries and takes one off the list once it is dealt with.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from rich.table import Table

from worker.cli import common
from worker.duplicates import DuplicateEntry, Duplicates
from worker.settings import Settings
from worker.times import local_ms

T = TypeVar("T")

duplicates_app = typer.Typer(
    name="duplicates",
    help="Duplicates at the provider that could not be voided (sent or paid): a person must act.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the `duplicates` command group to the app."""
    app.add_typer(duplicates_app, name="duplicates")


async def _with(s: Settings, use: Callable[[Duplicates], Awaitable[T]]) -> T:
    try:
        async with common.redis_client(s) as redis:
            return await use(Duplicates(redis, common.keys(s)))
    except RedisConnectionError as exc:
        common.fail(f"cannot reach Redis: {exc}")


@duplicates_app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List invoices with a live duplicate at the provider, newest first."""
    s = common.with_redis_url(common.settings(), quiet=as_json)
    entries = common.run(_with(s, lambda d: d.list(limit=limit)))
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries]))
        return
    if not entries:
        common.out.print("no open duplicates")
        return
    table = Table(title=f"open duplicates ({len(entries)} shown)", title_justify="left")
    for name in ("key", "kept", "other copies", "why", "found"):
        table.add_column(name, overflow="fold", no_wrap=name in ("key", "found"))
    for e in entries:
        table.add_row(e.invoice_key, e.keeper, _copies(e), _why(e), local_ms(e.at_ms))
    common.out.print(table)


@duplicates_app.command("resolve")
def resolve(
    key: Annotated[str, typer.Argument(help="Invoice key, e.g. stax:INV-1.")],
) -> None:
    """Take an entry off the list once the duplicate was dealt with at the provider."""
    s = common.with_redis_url(common.settings())
    if not common.run(_with(s, lambda d: d.resolve(key))):
        common.fail(f"{key} is not on the list of open duplicates (see `invoicer duplicates list`)")
    common.out.print(f"{key}: taken off the list", highlight=False)


def _copies(e: DuplicateEntry) -> str:
    return ", ".join(f"{c.provider_id} ({c.status})" for c in e.copies) or "-"


def _why(e: DuplicateEntry) -> str:
    reasons = [c.why for c in e.copies if c.why]
    return "; ".join(dict.fromkeys([*reasons, e.why] if e.why else reasons))
