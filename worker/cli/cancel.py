"""`invoicer cancel BATCH`: discard what is still queued of a batch (`worker.cancel`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from redis.exceptions import ConnectionError as RedisConnectionError

from worker.cancel import CancelReport, cancel_batch
from worker.cli import common
from worker.status import UnknownBatch

_LINES = (
    ("cancelled", "cancelled (discarded, never sent)"),
    ("send_cancelled", "created drafts kept, not sent"),
    ("in_flight", "in flight, will finish"),
    ("in_doubt", "in doubt, their lookup decides"),
    ("finished", "already finished"),
    ("moved", "taken over by a later batch"),
    ("missing", "without a ledger record"),
)


def register(app: typer.Typer) -> None:
    """Add `cancel` to the app."""
    app.command("cancel")(cancel)


def cancel(
    batch: Annotated[str, typer.Argument(help="The batch id (as `enqueue` printed it).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Discard every still-queued invoice of BATCH; in-flight ones finish.

    Prints how many were cancelled and how many will still finish (held by a
    worker, or in doubt: a request may have reached the provider). Safe to
    run again. The batch's report shows cancelled invoices as `discarded`,
    reason "cancelled". Exit 0 when done, 2 for an unknown batch.
    """
    s = common.with_redis_url(common.settings(), quiet=as_json, create=False)

    async def go() -> CancelReport:
        async with common.redis_client(s) as redis:
            return await cancel_batch(redis, common.keys(s), batch)

    try:
        report = common.run(go())
    except UnknownBatch as exc:
        common.fail(f"{exc}: `invoicer status` lists what is running")
    except RedisConnectionError as exc:
        common.fail(f"cannot reach Redis: {exc}")
    if as_json:
        print(json.dumps(report.as_dict()))
        return
    common.out.print(f"batch [bold]{batch}[/bold]")
    for name, label in _LINES:
        if report.counts[name] or name in ("cancelled", "in_flight", "in_doubt"):
            common.out.print(f"  {label:<36} {report.counts[name]:>8,}", highlight=False)
