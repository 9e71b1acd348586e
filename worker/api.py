"""The Python API for other systems: `await enqueue_invoices(...)`, `await enqueue_file(...)`.

The two ways into the queue, for invoices in memory and for a file; `invoicer
enqueue` and the HTTP API call them too. Both take the same three steps:

1. the records: the invoices given (numbered from 1), or the file's
   (`jobs.sources.read_invoices`, here or, for a large file, in a reader
   process: `worker.reader`);
2. intake (`worker.intake.prepared`): each record checked with the
   provider's own rules and serialised once; nothing is written yet;
3. enqueue (`worker.enqueue.enqueue`): pipelined chunks with idempotency on
   the invoice number; the invalid records are reported and dead-lettered.
   `enqueue_invoices(..., atomic=True)` instead writes a list of at most
   1,000 in one all-or-nothing step (`worker.atomic_enqueue`).
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from pathlib import Path
from typing import TypeAlias

import redis.asyncio as aioredis

from jobs.models import Invoice, Provider
from jobs.sources import Format, Record, RecordError, read_invoices
from worker.atomic_enqueue import ListRefused, enqueue_atomically
from worker.embedded import with_redis
from worker.enqueue import EnqueueReport, enqueue
from worker.intake import Intake, Taken, prepared, prepared_async
from worker.keys import Keys
from worker.reader import FileReader, worth_a_process
from worker.settings import Settings, load_settings

Item: TypeAlias = Invoice | Record | RecordError
"""What `enqueue_invoices` takes: invoices, or records from `jobs.sources.read_invoices`."""

__all__ = ["Item", "ListRefused", "enqueue_file", "enqueue_invoices"]


async def enqueue_invoices(
    invoices: Iterable[Item] | AsyncIterable[Item],
    *,
    provider: Provider,
    batch: str | None = None,
    send: bool = False,
    settings: Settings | None = None,
    redis: aioredis.Redis | None = None,
    on_progress: Callable[[int], None] | None = None,
    atomic: bool = False,
) -> EnqueueReport:
    """Validate and enqueue invoices for `provider` as one new batch; returns its counts.

    Args:
        invoices: `Invoice` objects (numbered 1, 2, ... in the report), or
            records from `jobs.sources.read_invoices`; sync or async.
        batch: a name for the batch (a unique batch id is made from it).
        send: send each invoice to its customer once created.
        settings: defaults to `load_settings()` (environment and `.env`).
        redis: a client to use; by default one is opened on the configured
            (or embedded) Redis and closed afterwards.
        on_progress: called after each chunk with the number of records handled.
        atomic: all or nothing (`worker.atomic_enqueue`): at most 1,000
            invoices, and one invalid or conflicting invoice means nothing
            is written. Without it, the valid ones are enqueued and the
            others reported (and parked), as for a file.

    Raises:
        ListRefused: with `atomic`, an invoice is invalid or conflicts; its
            report lists every problem, and nothing was written.
    """
    s = settings or load_settings()
    intake = Intake(provider, s.provider(provider).account, send)
    if atomic:
        taken = await _all_taken(invoices, intake)
        return await _with_client(
            s, redis, lambda c, k: enqueue_atomically(c, k, taken, intake, batch=batch)
        )
    items: Iterable[Taken] | AsyncIterable[list[Taken]]
    if isinstance(invoices, AsyncIterable):
        items = prepared_async(_numbered_async(invoices), intake)
    else:
        # A plain generator: a file of 100,000 invoices should not pay an
        # async-generator step per record for nothing.
        items = prepared(_numbered(invoices), intake)
    return await _enqueue(s, redis, items, intake, batch, on_progress)


async def enqueue_file(
    path: Path,
    *,
    provider: Provider,
    batch: str | None = None,
    send: bool = False,
    settings: Settings | None = None,
    redis: aioredis.Redis | None = None,
    on_progress: Callable[[int], None] | None = None,
    parallel: bool | None = None,
    fmt: Format | None = None,
) -> EnqueueReport:
    """`enqueue_invoices(read_invoices(path), ...)`, reading a large file in a second process.

    The report is the same either way. A file of at least
    `worker.reader.PARALLEL_MIN_BYTES` is read, validated and serialised by a
    reader process while this one enqueues, so two CPUs share the work.

    Args:
        path: the file; "-" reads standard input (here, never in a reader process).
        parallel: None: a reader process for large files; True: one for any
            regular file; False: never. Without a usable `sys.executable`
            (or when the process cannot start) the file is read here.
        fmt: "csv" or "jsonl"; by default the file's extension says.

    Raises:
        SourceError: the file cannot be read at all (bad header, unreadable).
        IntakeFailed: the reader process died before the end of the file
            (what was enqueued before stays enqueued; running again is safe).
    """
    s = settings or load_settings()
    path = Path(path)
    intake = Intake(provider, s.provider(provider).account, send)
    wanted = worth_a_process(path) if parallel is None else parallel and path.is_file()
    # Started first: its imports overlap our Redis set-up.
    reader = await FileReader.start(path, intake, fmt) if wanted else None
    if reader is None:
        records = read_invoices(path, fmt=fmt)
        return await _enqueue(s, redis, prepared(records, intake), intake, batch, on_progress)
    async with reader:
        return await _enqueue(s, redis, reader.batches(), intake, batch, on_progress)


async def _enqueue(
    s: Settings,
    redis: aioredis.Redis | None,
    items: Iterable[Taken] | AsyncIterable[list[Taken]],
    intake: Intake,
    batch: str | None,
    on_progress: Callable[[int], None] | None,
) -> EnqueueReport:
    """`worker.enqueue.enqueue` on `redis`, or on the configured (or embedded) Redis."""
    return await _with_client(
        s, redis, lambda c, k: enqueue(c, k, items, intake, batch=batch, on_progress=on_progress)
    )


async def _with_client(
    s: Settings,
    redis: aioredis.Redis | None,
    run: Callable[[aioredis.Redis, Keys], Awaitable[EnqueueReport]],
) -> EnqueueReport:
    """`run` on `redis`, or on a client of the configured (or embedded) Redis, closed afterwards."""
    if redis is not None:
        return await run(redis, Keys(s.redis_prefix))
    s, _ = with_redis(s)
    assert s.redis_url is not None
    client = aioredis.Redis.from_url(s.redis_url.get_secret_value())
    try:
        return await run(client, Keys(s.redis_prefix))
    finally:
        await client.aclose()


async def _all_taken(invoices: Iterable[Item] | AsyncIterable[Item], intake: Intake) -> list[Taken]:
    """Every record prepared, in memory (an atomic list is bounded)."""
    if not isinstance(invoices, AsyncIterable):
        return list(prepared(_numbered(invoices), intake))
    return [t async for some in prepared_async(_numbered_async(invoices), intake) for t in some]


def _numbered(items: Iterable[Item]) -> Iterator[Record | RecordError]:
    for line, item in enumerate(items, start=1):
        yield _record(line, item)


async def _numbered_async(items: AsyncIterable[Item]) -> AsyncIterator[Record | RecordError]:
    line = 0
    async for item in items:
        line += 1
        yield _record(line, item)


def _record(line: int, item: Item) -> Record | RecordError:
    """An `Invoice` as the record numbered `line`; a record as it is."""
    return Record(line=line, invoice=item) if isinstance(item, Invoice) else item
