"""`invoicer dlq`: list, show, requeue, discard and export dead letters.

The operator's side of `worker.dlq.DeadLetters`: this module parses
options, validates a corrected payload, renders tables and picks exit codes.
What requeue and discard do to the ledger (never a duplicate invoice, an
in-doubt invoice looked up before any create) is `DeadLetters`' contract,
not decided here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TextIO, TypeVar

import redis.asyncio as aioredis
import typer
from pydantic import ValidationError
from rich.table import Table

from jobs.models import Invoice
from worker.cli import common
from worker.dead_letter import DeadLetter
from worker.dlq import DeadLetters
from worker.enqueue import EnqueueOutcome
from worker.keys import Keys
from worker.ledger import Ledger
from worker.report import iso_ms, write_atomically
from worker.settings import Settings

T = TypeVar("T")

dlq_app = typer.Typer(
    name="dlq",
    help="Dead letters: invoices that need a person (rejected, or in doubt).",
    no_args_is_help=True,
)

_FAILED_OUTCOMES = (EnqueueOutcome.CONFLICT,)


def register(app: typer.Typer) -> None:
    """Add the `dlq` command group to the app."""
    app.add_typer(dlq_app, name="dlq")


async def _with_dlq(
    s: Settings, use: Callable[[DeadLetters, aioredis.Redis, Keys], Awaitable[T]]
) -> T:
    async with common.redis_client(s) as redis:
        keys = common.keys(s)
        return await use(DeadLetters(redis, keys), redis, keys)


def _settings(*, quiet: bool = False) -> Settings:
    return common.with_redis_url(common.settings(), quiet=quiet, create=False)


@dlq_app.command("list")
def list_(
    batch: Annotated[str | None, typer.Option(help="Only this batch.")] = None,
    reason: Annotated[
        str | None, typer.Option(help="Only this reason (rejected, in_doubt, exhausted...).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List dead letters, newest first."""
    s = _settings(quiet=as_json)
    entries = common.run(
        _with_dlq(s, lambda d, _r, _k: d.list(batch=batch, reason=reason, limit=limit))
    )
    if as_json:
        typer.echo(json.dumps([entry_dict(e) for e in entries]))
        return
    table = Table(title=f"dead letters ({len(entries)} shown)", title_justify="left")
    for name in ("key", "reason", "status/code", "message", "attempts", "last"):
        table.add_column(name, overflow="fold", no_wrap=name in ("key", "last"))
    for e in entries:
        table.add_row(
            e.invoice_key,
            e.reason,
            _status_code(e),
            e.message,
            str(e.attempts),
            iso_ms(e.last_at_ms),
        )
    common.out.print(table)


@dlq_app.command("show")
def show(
    key: Annotated[str, typer.Argument(help="Invoice key, e.g. maast:INV-1.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    payload_only: Annotated[
        bool,
        typer.Option("--payload-only", help="Print only the invoice JSON, to edit for --payload."),
    ] = False,
) -> None:
    """Everything about one dead letter: error, field errors, payload, history."""
    s = _settings(quiet=as_json or payload_only)

    async def read(
        d: DeadLetters, redis: aioredis.Redis, keys: Keys
    ) -> tuple[DeadLetter | None, list[dict[str, object]]]:
        entry = await d.get(key)
        history = [] if entry is None else await Ledger(redis, keys).history(key)
        return entry, history

    entry, history = common.run(_with_dlq(s, read))
    if entry is None:
        common.fail(f"no dead letter {key!r} (see `invoicer dlq list`)")
    if payload_only:
        typer.echo(json.dumps(compact_payload(entry.payload), indent=2))
        return
    if as_json:
        typer.echo(json.dumps({**entry_dict(entry), "history": history}, default=str))
        return
    _print_entry(entry, history)


@dlq_app.command("requeue")
def requeue(
    key: Annotated[str | None, typer.Argument(help="Invoice key of one dead letter.")] = None,
    batch: Annotated[str | None, typer.Option(help="Requeue every dead letter of a batch.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Requeue every dead letter.")] = False,
    payload: Annotated[
        Path | None,
        typer.Option(help="JSON file with the corrected invoice (neutral shape); one KEY only."),
    ] = None,
) -> None:
    """Try again: KEY, or --batch B, or --all; optionally with a corrected --payload."""
    if sum((key is not None, batch is not None, all_)) != 1:
        common.fail("say exactly one of KEY, --batch B or --all")
    if payload is not None and key is None:
        common.fail("--payload corrects one invoice: give its KEY")
    s = _settings()
    if key is not None:
        corrected = None if payload is None else load_payload(payload)
        raise typer.Exit(
            common.run(_with_dlq(s, lambda d, _r, _k: _requeue_one(d, key, corrected)))
        )
    outcomes = common.run(_with_dlq(s, lambda d, _r, _k: d.requeue_many(batch=batch, all=all_)))
    summary = ", ".join(f"{n} {o.value}" for o, n in outcomes.items() if n) or "nothing to requeue"
    common.out.print(f"requeued: {summary}", highlight=False)
    failed = any(outcomes.get(o, 0) for o in _FAILED_OUTCOMES)
    raise typer.Exit(common.EXIT_SOME_FAILED if failed else common.EXIT_OK)


@dlq_app.command("discard")
def discard(key: Annotated[str, typer.Argument(help="Invoice key of the dead letter.")]) -> None:
    """Give up on an invoice for good: it becomes `discarded`, the entry goes."""
    s = _settings()
    if not common.run(_with_dlq(s, lambda d, _r, _k: d.discard(key))):
        common.fail(f"no dead letter {key!r} (see `invoicer dlq list`)")
    common.out.print(f"{key}: discarded", highlight=False)


@dlq_app.command("export")
def export(
    csv_format: Annotated[bool, typer.Option("--csv", help="CSV (the only format).")] = True,
    out: Annotated[
        Path | None,
        typer.Option(help="File to write; default stdout.", callback=common.output_path),
    ] = None,
    batch: Annotated[str | None, typer.Option(help="Only this batch.")] = None,
    reason: Annotated[str | None, typer.Option(help="Only this reason.")] = None,
) -> None:
    """Export dead letters as CSV (formula-safe for spreadsheets)."""
    s = _settings(quiet=out is None)

    async def write(fh: TextIO) -> int:
        return await _with_dlq(s, lambda d, _r, _k: d.export_csv(fh, batch=batch, reason=reason))

    if out is None:
        rows = common.run(write(sys.stdout))
    else:
        rows = write_atomically(out, lambda fh: common.run(write(fh)))
    common.err.print(f"exported {rows} dead letters", highlight=False)


def load_payload(path: Path) -> Invoice:
    """The corrected invoice in FILE, or exit 2 listing what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        common.fail(f"{path}: {exc.strerror or exc}")
    try:
        return Invoice.model_validate_json(text)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "(file)"
            common.err.print(f"  {where}: {error['msg']}", highlight=False, markup=False)
        common.fail(f"{path}: not a valid invoice ({exc.error_count()} field errors above)")


async def _requeue_one(d: DeadLetters, key: str, corrected: Invoice | None) -> int:
    entry = await d.get(key)
    if entry is None:
        common.fail(f"no dead letter {key!r} (see `invoicer dlq list`)")
    if corrected is not None and corrected.number != entry.number:
        # A different number is a different invoice: that is an enqueue, not a fix.
        common.fail(
            f"--payload has number {corrected.number!r}, the dead letter is {entry.number!r}"
        )
    try:
        outcome = await d.requeue(key, payload=corrected)
    except KeyError:  # discarded or requeued by someone else just now
        common.fail(f"no dead letter {key!r} any more (see `invoicer dlq list`)")
    except ValueError as exc:  # an invalid record that never parsed: needs --payload
        common.fail(str(exc))
    common.out.print(f"{key}: {_OUTCOME_TEXT.get(outcome, outcome.value)}", highlight=False)
    return common.EXIT_SOME_FAILED if outcome in _FAILED_OUTCOMES else common.EXIT_OK


_OUTCOME_TEXT = {
    EnqueueOutcome.ACCEPTED: "requeued",
    EnqueueOutcome.SUPERSEDED: "requeued",
    EnqueueOutcome.DUPLICATE: "already queued",
    EnqueueOutcome.ALREADY_CREATED: "already created at the provider; stale dead letter dropped",
    EnqueueOutcome.CONFLICT: "conflict: the invoice is active with other content; not requeued",
}


def entry_dict(e: DeadLetter) -> dict[str, object]:
    """A dead letter as JSON-ready data (stable names; payload parsed)."""
    return {
        "invoice_key": e.invoice_key,
        "provider": e.provider.value,
        "number": e.number,
        "batch": e.batch,
        "reason": e.reason,
        "kind": e.kind,
        "status": e.status,
        "code": e.code,
        "message": e.message,
        "field_errors": [{"field": f.field, "message": f.message} for f in e.field_errors],
        "attempts": e.attempts,
        "first_at": iso_ms(e.first_at_ms),
        "last_at": iso_ms(e.last_at_ms),
        "payload": _parsed(e.payload),
    }


def compact_payload(payload: str) -> object:
    """The stored invoice without fields left at their defaults: what a person reads.

    Still a valid invoice for `requeue --payload` (defaults come back on load).
    """
    try:
        return Invoice.model_validate_json(payload).model_dump(mode="json", exclude_defaults=True)
    except ValidationError:
        return _parsed(payload)


def _parsed(payload: str) -> object:
    try:
        return json.loads(payload)
    except ValueError:
        return payload


def _status_code(e: DeadLetter) -> str:
    status = "" if e.status is None else str(e.status)
    return status + ("" if e.code is None else f"/{e.code}")


def _print_entry(e: DeadLetter, history: list[dict[str, object]]) -> None:
    p = common.out.print
    p(f"[bold]{e.invoice_key}[/]  batch {e.batch}  reason [red]{e.reason}[/]", highlight=False)
    p(f"error: {e.kind} {_status_code(e)}: {e.message}", highlight=False, markup=False)
    p(f"attempts: {e.attempts}  first {iso_ms(e.first_at_ms)}  last {iso_ms(e.last_at_ms)}")
    if e.field_errors:
        p("field errors:")
        for f in e.field_errors:
            p(f"  {f.field}: {f.message}", highlight=False, markup=False)
    p("payload (defaults left out; edit it with --payload-only):")
    common.out.print_json(json.dumps(compact_payload(e.payload)))
    if history:
        table = Table(title="history", title_justify="left")
        for name in ("at", "event", "state", "detail"):
            table.add_column(name, overflow="fold")
        for h in history:
            at = h.get("at_ms")
            table.add_row(
                iso_ms(int(at)) if isinstance(at, int | float) else "",
                str(h.get("event", "")),
                str(h.get("state", "")),
                str(h.get("detail", "") or ""),
            )
        p(table)
