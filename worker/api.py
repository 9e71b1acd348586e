"""The Python API for other systems: `await enqueue_invoices(...)`.

The same path as `invoicer enqueue`: every record is validated with the
provider's own rules before anything is written, then enqueued in pipelined
chunks with idempotency on the invoice number.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import TypeAlias

import redis.asyncio as aioredis

from jobs.errors import FieldError, InvoiceInvalid
from jobs.models import Invoice, Provider
from jobs.providers import validator
from jobs.sources import Record, RecordError
from worker.embedded import with_redis
from worker.enqueue import EnqueueReport
from worker.enqueue import enqueue_invoices as _enqueue
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
    if redis is not None:
        return await _enqueue_with(redis, s, records, provider, batch, send, on_progress)
    s, _ = with_redis(s)
    assert s.redis_url is not None
    client = aioredis.Redis.from_url(s.redis_url.get_secret_value())
    try:
        return await _enqueue_with(client, s, records, provider, batch, send, on_progress)
    finally:
        await client.aclose()


async def _enqueue_with(
    redis: aioredis.Redis,
    s: Settings,
    records: Iterable[Record | RecordError] | AsyncIterable[Record | RecordError],
    provider: Provider,
    batch: str | None,
    send: bool,
    on_progress: Callable[[int], None] | None,
) -> EnqueueReport:
    return await _enqueue(
        redis,
        Keys(s.redis_prefix),
        records,
        provider=provider,
        account=s.provider(provider).account,
        batch=batch,
        send=send,
        on_progress=on_progress,
    )


def _validated(items: Iterable[Item], provider: Provider) -> Iterator[Record | RecordError]:
    validate = validator(provider)
    for index, item in enumerate(items, start=1):
        yield from _checked_item(index, item, provider, validate)


async def _validated_async(
    items: AsyncIterable[Item], provider: Provider
) -> AsyncIterator[Record | RecordError]:
    validate = validator(provider)
    index = 0
    async for item in items:
        index += 1
        for checked in _checked_item(index, item, provider, validate):
            yield checked


def _checked_item(
    index: int, item: Item, provider: Provider, validate: Callable[[Invoice], None]
) -> list[Record | RecordError]:
    """`item` (the `index`-th given) as checked records; an `Invoice` is numbered by `index`."""
    record = Record(line=index, invoice=item) if isinstance(item, Invoice) else item
    if isinstance(record, RecordError):
        return [record]
    return _checked(record, provider, validate)


def _checked(
    record: Record, provider: Provider, validate: Callable[[Invoice], None]
) -> list[Record | RecordError]:
    """The record, or one `RecordError` per problem the provider's rules find."""
    number = record.invoice.number
    if record.provider is not None and record.provider is not provider:
        message = f"holds a {record.provider.value} request but the batch is for {provider.value}"
        return [RecordError(record.line, message, field="provider", invoice_number=number)]
    try:
        validate(record.invoice)
    except InvoiceInvalid as exc:
        problems = exc.field_errors or (FieldError("invoice", exc.message),)
        return [
            RecordError(
                record.line,
                problem.message,
                field=problem.field,
                invoice_number=number,
                invoice=record.invoice,
            )
            for problem in problems
        ]
    return [record]
