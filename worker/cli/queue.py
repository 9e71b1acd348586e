"""`invoicer enqueue` and `invoicer worker`: the two ends of the queue.

Each command imports what only it needs inside its function: `enqueue` must
not pay for arq and the worker runtime, which `invoicer enqueue` of a large
file would otherwise load for nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from jobs.models import Provider
from jobs.sources import Format, SourceError, format_of
from worker import api
from worker.cli import common, serving
from worker.enqueue import EnqueueInterrupted, EnqueueReport
from worker.reader import IntakeFailed
from worker.settings import Settings


def register(app: typer.Typer) -> None:
    """Add `enqueue` and `worker` to the app."""
    app.command("enqueue")(enqueue)
    app.command("worker")(worker)


class InputFormat(StrEnum):
    """`--format`: what FILE holds (by default its extension says)."""

    CSV = "csv"
    JSONL = "jsonl"


def enqueue(
    file: Annotated[
        Path, typer.Argument(help="CSV or JSONL file of invoices; '-' reads standard input.")
    ],
    provider: Annotated[Provider, typer.Option(help="The provider to create them at.")],
    batch: Annotated[
        str | None,
        typer.Option(
            help="A name for this batch (a label: every run is a batch of its own, whose "
            "id starts with the name)."
        ),
    ] = None,
    fmt: Annotated[
        InputFormat | None,
        typer.Option(
            "--format", help="csv or jsonl; default: FILE's extension (.csv, .jsonl, .ndjson)."
        ),
    ] = None,
    send: Annotated[
        bool, typer.Option("--send", help="Send each invoice to its customer once created.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Validate every record of FILE and queue the valid ones.

    Exit 0 when every record was accepted (or was already queued or created
    with the same content), 1 when some were invalid or conflicted, 2 on a
    usage or configuration error (also for a file without a single record).
    """
    chosen = _format_of(file, fmt)
    s = common.with_redis_url(common.settings(), quiet=as_json)
    try:
        report = common.run(
            _enqueue(file, chosen, provider, batch, send, s, show_progress=not as_json)
        )
    except SourceError as exc:
        common.fail(f"{_name(file)}: {exc}")
    except (IntakeFailed, EnqueueInterrupted) as exc:
        # Not a usage error: part of the file may be queued, and running the
        # same command again is safe (enqueueing is idempotent).
        common.fail(f"{file}: {exc}; run the same command again to finish", common.EXIT_SOME_FAILED)
    if as_json:
        report.write_json(sys.stdout)  # plain JSON, streamed: rich would pretty-print 80,000 rows
    else:
        _print_report(report)
    raise typer.Exit(common.EXIT_OK if report.ok else common.EXIT_SOME_FAILED)


def _format_of(file: Path, fmt: InputFormat | None) -> Format:
    """The format to read FILE in, or exit 2 saying how to give it."""
    if str(file) == "-":
        if fmt is None:
            common.fail("reading standard input ('-') needs --format csv or --format jsonl")
        return fmt.value
    if not file.is_file():
        common.fail(f"{file}: {'is a directory' if file.is_dir() else 'no such file'}")
    found = fmt.value if fmt is not None else format_of(file)
    if found is None:
        common.fail(
            f"{file}: cannot tell its format from the extension {file.suffix or '(none)'}: "
            "give --format csv or --format jsonl"
        )
    return found


def _name(file: Path) -> str:
    return "standard input" if str(file) == "-" else str(file)


async def _enqueue(
    file: Path,
    fmt: Format,
    provider: Provider,
    batch: str | None,
    send: bool,
    s: Settings,
    *,
    show_progress: bool,
) -> EnqueueReport:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} records"),
        TimeElapsedColumn(),
        console=common.err,
        disable=not show_progress or not common.err.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task(f"enqueueing {_name(file)}", total=None)
        return await api.enqueue_file(
            file,
            fmt=fmt,
            provider=provider,
            batch=batch,
            send=send,
            settings=s,
            on_progress=lambda n: progress.update(task, completed=n),
        )


def _print_report(report: EnqueueReport) -> None:
    """The counts (they add up to the records read), then one plain line per problem."""
    out = common.out
    out.print(f"batch [bold]{report.batch_id}[/bold] ({report.provider.value})", highlight=False)
    rows = [
        ("records read", report.records, ""),
        ("accepted", report.accepted, _replacing(report)),
        ("already queued", report.duplicates, "same content: nothing to do"),
        ("already created", report.already_created, "skipped"),
        ("conflicts", len(report.conflicts), "same number, other content: not queued"),
        ("invalid", report.invalid_records, _problems(report)),
    ]
    for label, count, note in rows:
        out.print(f"  {label:<16}{count:>9,}  {note}".rstrip(), highlight=False)
    if report.durability:
        mark = {True: "[green]on disk[/green]", None: "[yellow]not promised[/yellow]"}.get(
            report.durable, "[red]may be lost[/red]"
        )
        out.print(f"  {mark}: {report.durability}", highlight=False)
    # Plain writes, not one rich print per line: a file with 80,000 bad rows
    # must print in a second, not in a minute.
    lines = (
        f"  conflict line {line} {number}: {message}" for line, number, message in report.conflicts
    )
    _write_lines(lines)
    _write_lines(f"  invalid {error}" for error in report.invalid)
    out.print(f"watch it: invoicer status --batch {report.batch_id} --watch", highlight=False)


def _replacing(report: EnqueueReport) -> str:
    return f"{report.superseded:,} of them replacing dead letters" if report.superseded else ""


def _problems(report: EnqueueReport) -> str:
    problems = len(report.invalid)
    if not problems:
        return ""
    parked = f"{report.invalid_dead_lettered:,} dead-lettered"
    return f"{problems:,} problem{'s' if problems != 1 else ''} below; {parked}"


def _write_lines(lines: Iterable[str], per_write: int = 1000) -> None:
    out = common.out.file
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= per_write:
            out.write("\n".join(batch) + "\n")
            batch = []
    if batch:
        out.write("\n".join(batch) + "\n")
    out.flush()


def worker(
    providers: Annotated[
        list[Provider] | None,
        typer.Option(
            "--providers", help="Queues to drain (repeat); default: every provider with a key."
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs in flight per queue in this process.")
    ] = None,
    burst: Annotated[
        bool,
        typer.Option(
            "--burst",
            help="Stop once the queues are empty, or can only wait on a pause "
            "that a person must end (then exit 1, saying what waits).",
        ),
    ] = False,
) -> None:
    """Drain the queues: create invoices, retry, dead-letter, until stopped (SIGTERM)."""
    s = common.settings()
    chosen = providers or [p for p in Provider if s.provider(p).api_key is not None]
    if not chosen:
        common.fail("no provider has an API key: set MAAST_API_KEY or STAX_API_KEY")
    for p in chosen:
        common.require_key(s, p)
    if concurrency is not None:
        s = s.model_copy(update={"concurrency": concurrency})
    s = common.with_redis_url(s)
    serving.print_lines(
        common.err, serving.serving_lines(s, chosen, redis=common.redis_in_use(), burst=burst)
    )
    summary = common.run(_work(s, chosen, burst=burst))
    if summary is not None:
        serving.print_lines(common.out, summary.lines(s))
        # What waits on a pause: with the logs, and the exit code says so too.
        serving.print_lines(common.err, [f"stopped: {q.describe()}" for q in summary.stalled])
        if summary.stalled:
            raise typer.Exit(common.EXIT_SOME_FAILED)


async def _work(s: Settings, chosen: list[Provider], *, burst: bool) -> serving.BurstSummary | None:
    """Run the workers; with `burst`, what they did (None otherwise)."""
    from worker.app import redis_up, run_workers  # only this command needs arq

    if not burst:
        await run_workers(s, chosen)
        return None
    async with common.redis_client(s) as redis:
        await redis_up(redis)  # a worker started before its Redis waits for it
        before = await serving.account_counts(redis, common.keys(s), s, chosen)
        started = time.monotonic()
        run = await run_workers(s, chosen, burst=True)
        after = await serving.account_counts(redis, common.keys(s), s, chosen)
    return serving.BurstSummary(time.monotonic() - started, run.jobs, before, after, run.stalled)
