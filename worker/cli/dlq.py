"""`invoicer dlq`: list, show, requeue, discard and export dead letters.

The operator's side of `worker.dlq.DeadLetters`: this module parses
options, validates a corrected payload and picks exit codes; `dlq_view`
draws the entries.
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

from jobs.models import Invoice
from jobs.sources import Record, RecordError, parse_json, read_objects
from worker.cli import common
from worker.cli.dlq_view import compact_payload, entry_dict, print_entry, print_list
from worker.dead_letter import DeadLetter
from worker.dlq import DeadLetters
from worker.dlq_export import MixedSources, SourceExport
from worker.enqueue import EnqueueOutcome
from worker.keys import Keys
from worker.ledger import Ledger
from worker.report import write_atomically
from worker.settings import Settings
from worker.status import UnknownBatch

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
    s: Settings,
    use: Callable[[DeadLetters, aioredis.Redis, Keys], Awaitable[T]],
    *,
    batch: str | None = None,
) -> T:
    """`use` on the dead letters of `s`'s Redis; an unknown `batch` exits 2 (as in status)."""
    async with common.redis_client(s) as redis:
        keys = common.keys(s)
        if batch is not None and not await redis.exists(keys.batch(batch)):
            common.fail(str(UnknownBatch(batch)))
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
        _with_dlq(s, lambda d, _r, _k: d.list(batch=batch, reason=reason, limit=limit), batch=batch)
    )
    if as_json:
        typer.echo(json.dumps([entry_dict(e) for e in entries]))
        return
    print_list(common.out, entries, limit=limit)


@dlq_app.command("show")
def show(
    key: Annotated[str, typer.Argument(help="Invoice key, e.g. maast:INV-1.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    payload_only: Annotated[
        bool,
        typer.Option("--payload-only", help="Print only the invoice JSON, to edit for --payload."),
    ] = False,
) -> None:
    """Everything about one dead letter: error, field errors, what was written, payload, history."""
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
    print_entry(common.out, entry, history)


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
    outcomes = common.run(
        _with_dlq(s, lambda d, _r, _k: d.requeue_many(batch=batch, all=all_), batch=batch)
    )
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
    source: Annotated[
        bool,
        typer.Option(
            "--source",
            help="The rows of the records refused at enqueue, in their input format, to fix "
            "and enqueue again (instead of the list).",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="File to write; default stdout.", callback=common.output_path),
    ] = None,
    batch: Annotated[str | None, typer.Option(help="Only this batch.")] = None,
    reason: Annotated[str | None, typer.Option(help="Only this reason.")] = None,
) -> None:
    """Export dead letters as CSV (formula-safe for spreadsheets), or with --source the
    rows the user wrote (CSV with its header, or JSONL), in line order."""
    s = _settings(quiet=out is None)

    async def write(fh: TextIO) -> int | SourceExport:
        def go(d: DeadLetters, _r: aioredis.Redis, _k: Keys) -> Awaitable[int | SourceExport]:
            if source:
                return d.export_source(fh, batch=batch, reason=reason)
            return d.export_csv(fh, batch=batch, reason=reason)

        return await _with_dlq(s, go, batch=batch)

    try:
        if out is None or str(out) == "-":
            done = common.run(write(sys.stdout))
        else:
            done = write_atomically(out, lambda fh: common.run(write(fh)))
    except MixedSources as exc:
        common.fail(str(exc))
    if isinstance(done, int):
        common.err.print(f"exported {done} dead letters", highlight=False)
        return
    common.err.print(
        f"exported the {done.rows} rows of {done.records} records refused at enqueue"
        + (
            f"; {done.without_source} dead letters hold no rows (see dlq list)"
            if done.without_source
            else ""
        ),
        highlight=False,
    )


def load_payload(path: Path) -> Invoice:
    """The corrected invoice in FILE, or exit 2 listing what is wrong with it.

    Read as a JSONL file's one line would be (`jobs.sources.read_objects`):
    the same paths (`lines[0].quantity`) and plain words as for a file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        common.fail(f"{path}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        common.fail(f"{path}: not UTF-8 text")
    try:
        body = parse_json(text)
    except ValueError as exc:
        common.fail(f"{path}: not valid JSON: {exc}")
    items = list(read_objects([body]))
    if len(items) == 1 and isinstance(items[0], Record):
        return items[0].invoice
    problems = [item for item in items if isinstance(item, RecordError)]
    for problem in problems:
        where = problem.field or "(invoice)"
        common.err.print(f"  {where}: {problem.message}", highlight=False, markup=False)
    common.fail(f"{path}: not a valid invoice ({len(problems)} problems above)")


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
