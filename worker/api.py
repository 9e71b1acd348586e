"""The Python API for other systems: `await enqueue_invoices(...)`, `await enqueue_file(...)`.

The same path as `invoicer enqueue`: every record is validated with the
provider's own rules before anything is written, then enqueued in pipelined
chunks with idempotency on the invoice number.
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
from jobs.sources import Record, RecordError, read_invoices
from worker.embedded import with_redis
from worker.enqueue import EnqueueReport, enqueue_batches
from worker.enqueue import enqueue_invoices as _enqueue
from worker.intake import FileReader, checked, worth_a_process
from worker.keys import Keys
from worker.settings import Settings, load_settings

Item: TypeAlias = Invoice | Record | RecordError


async def enqueue_invoices(
    invoices: Iterable[Item] | AsyncIterable[Item],
    *,
    provider: Provider,
    batch: str | None = None,
    send: bool = False,
    settings: Settings | None = None,
    redis: aioredis.Redis | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> EnqueueReport:
    """Validate and enqueue invoices for `provider`; returns the batch's counts.

    Args:
        invoices: `Invoice` objects, or records from `jobs.sources.read_invoices`.
        batch: a name for the batch (a unique batch id is made from it).
        send: send each invoice to its customer once created.
        settings: defaults to `load_settings()` (environment and `.env`).
        redis: a client to use; by default one is opened on the configured
            (or embedded) Redis and closed afterwards.
    """
    s = settings or load_settings()
    records: Iterable[Record | RecordError] | AsyncIterable[Record | RecordError]
    if isinstance(invoices, AsyncIterable):
        records = _validated_async(invoices, provider)
    else:
        # A plain generator: a file of 100,000 invoices should not pay an
        # async-generator step per record for nothing.
        records = _validated(invoices, provider)

    async def run(client: aioredis.Redis, s: Settings) -> EnqueueReport:
        return await _enqueue(
            client,
            Keys(s.redis_prefix),
            records,
            provider=provider,
            account=s.provider(provider).account,
            batch=batch,
            send=send,
            on_progress=on_progress,
        )

    return await _with_client(s, redis, run)


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
) -> EnqueueReport:
    """`enqueue_invoices(read_invoices(path), ...)`, reading a large file in a second process.

    The report is the same either way. A file of at least
    `worker.intake.PARALLEL_MIN_BYTES` is read, validated and serialised by a
    reader process while this one enqueues, so two CPUs share the work.

    Args:
        parallel: None: a reader process for large files; True: one for any
            regular file; False: never. Without a usable `sys.executable`
            (or when the process cannot start) the file is read here.

    Raises:
        SourceError: the file cannot be read at all (bad header, unreadable).
        IntakeFailed: the reader process died before the end of the file
            (what was enqueued before stays enqueued; running again is safe).
    """
    s = settings or load_settings()
    path = Path(path)
    wanted = worth_a_process(path) if parallel is None else parallel and path.is_file()
    account = s.provider(provider).account
    reader = None
    if wanted:  # started first: its imports overlap our Redis set-up
        reader = await FileReader.start(path, provider=provider, account=account, send=send)
    if reader is None:
        return await enqueue_invoices(
            read_invoices(path),
            provider=provider,
            batch=batch,
            send=send,
            settings=s,
            redis=redis,
            on_progress=on_progress,
        )

    async def run(client: aioredis.Redis, s: Settings) -> EnqueueReport:
        return await enqueue_batches(
            client,
            Keys(s.redis_prefix),
            reader.batches(),
            provider=provider,
            account=account,
            batch=batch,
            send=send,
            on_progress=on_progress,
        )

    async with reader:
        return await _with_client(s, redis, run)


async def _with_client(
    s: Settings,
    redis: aioredis.Redis | None,
    run: Callable[[aioredis.Redis, Settings], Awaitable[EnqueueReport]],
) -> EnqueueReport:
    """`run` with `redis`, or with a client on the configured (or embedded) Redis, closed after."""
    if redis is not None:
        return await run(redis, s)
    s, _ = with_redis(s)
    assert s.redis_url is not None
    client = aioredis.Redis.from_url(s.redis_url.get_secret_value())
    try:
        return await run(client, s)
    finally:
        await client.aclose()


def _validated(items: Iterable[Item], provider: Provider) -> Iterator[Record | RecordError]:
    validate = _validator(provider)
    for index, item in enumerate(items, start=1):
        yield from _checked_item(index, item, provider, validate)


async def _validated_async(
    items: AsyncIterable[Item], provider: Provider
) -> AsyncIterator[Record | RecordError]:
    validate = _validator(provider)
    index = 0
    async for item in items:
        index += 1
        for record in _checked_item(index, item, provider, validate):
            yield record


def _validator(provider: Provider) -> Callable[[Invoice], None]:
    # Imported here: the provider package loads the HTTP clients; `enqueue_file`
    # with a reader process validates there and must start it without them.
    from jobs.providers import validator

    return validator(provider)


def _checked_item(
    index: int, item: Item, provider: Provider, validate: Callable[[Invoice], None]
) -> list[Record | RecordError]:
    """`item` (the `index`-th given) as checked records; an `Invoice` is numbered by `index`."""
    record = Record(line=index, invoice=item) if isinstance(item, Invoice) else item
    if isinstance(record, RecordError):
        return [record]
    return checked(record, provider, validate)
