"""Bulk enqueue: records in, ledger records and arq jobs out, pipelined.

Each invoice is one run of `worker/lua/enqueue.lua`, which decides in one
atomic step whether the invoice is new (ledger record + arq job), a
duplicate, already created, a conflict (same number, other content) or a
retry of a rejected invoice (a new generation with a fresh job id). The runs
are sent in non-transactional pipelines of `chunk_size`, streaming: records
are never all held in memory. Validation is the caller's: records are
enqueued as given. This module never talks to a provider.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

import redis.asyncio as aioredis

from jobs.models import Invoice, Provider
from jobs.sources import Record, RecordError
from worker.intake import Prepared, script_item
from worker.keys import Keys, invoice_key
from worker.lua import Scripts, script_env
from worker.replies import text

INVOICES_PER_CALL = 50
_NUMBER = re.compile(r"[A-Za-z0-9._/-]{1,64}")
"""An invoice number usable as a key (the model's rule): only those are parked."""
"""Invoices per script call: the key environment is decoded once per call, and
Redis is never blocked for long (about 1 ms per call)."""

__all__ = [
    "EnqueueOutcome",
    "EnqueueReport",
    "Enqueuer",
    "enqueue_batches",
    "enqueue_invoices",
]


class EnqueueOutcome(StrEnum):
    """What enqueueing one invoice did."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    ALREADY_CREATED = "already_created"
    CONFLICT = "conflict"
    SUPERSEDED = "superseded"


@dataclass
class EnqueueReport:
    """Counts of one enqueue run (one batch)."""

    batch_id: str
    provider: Provider
    accepted: int = 0
    """New invoices, plus superseded ones (re-enqueued after a rejection or discard)."""
    superseded: int = 0
    duplicates: int = 0
    """Same content already queued or in flight: nothing to do."""
    already_created: int = 0
    """Same content already created: skipped."""
    conflicts: list[tuple[int, str, str]] = field(default_factory=list)
    """(line, invoice number, message): same number, different content."""
    invalid: list[RecordError] = field(default_factory=list)
    invalid_dead_lettered: int = 0
    """Invalid records parked in the dead-letter queue (those with a usable number)."""

    @property
    def ok(self) -> bool:
        """No conflicts and no invalid records."""
        return not self.conflicts and not self.invalid

    def as_dict(self) -> dict[str, object]:
        """The report as plain data, for `--json`."""
        return {
            "batch_id": self.batch_id,
            "provider": self.provider.value,
            "ok": self.ok,
            "accepted": self.accepted,
            "invalid_dead_lettered": self.invalid_dead_lettered,
            "superseded": self.superseded,
            "duplicates": self.duplicates,
            "already_created": self.already_created,
            "conflicts": [
                {"line": line, "invoice_number": number, "message": message}
                for line, number, message in self.conflicts
            ],
            "invalid": [
                {
                    "line": e.line,
                    "invoice_number": e.invoice_number,
                    "field": e.field,
                    "message": e.message,
                }
                for e in self.invalid
            ],
        }

    def count(self, outcome: EnqueueOutcome, line: int, number: str, state: str) -> None:
        """Add one invoice's outcome."""
        if outcome is EnqueueOutcome.ACCEPTED:
            self.accepted += 1
        elif outcome is EnqueueOutcome.SUPERSEDED:
            self.accepted += 1
            self.superseded += 1
        elif outcome is EnqueueOutcome.DUPLICATE:
            self.duplicates += 1
        elif outcome is EnqueueOutcome.ALREADY_CREATED:
            self.already_created += 1
        else:
            message = f"invoice {number} is already {state} with different content"
            self.conflicts.append((line, number, message))


def new_batch_id(name: str | None = None) -> str:
    """A readable unique batch id: `b-20261122-043012-ab12` or `<name-slug>-ab12`."""
    suffix = secrets.token_hex(2)
    if name:
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
        if slug:
            return f"{slug}-{suffix}"
    return f"b-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{suffix}"


class Enqueuer:
    """Runs the enqueue script; shared by bulk enqueue and dead-letter requeue."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        scripts = Scripts.register(redis)
        self.script = scripts.enqueue
        self.reject = scripts.reject
        self.env = script_env(keys)

    def head(self, *, provider: Provider, account: str, batch: str, mode: str) -> list[str]:
        """The script arguments shared by every invoice of one call."""
        return [self.env, "", provider.value, account, batch, mode]

    def item(self, invoice: Invoice, *, provider: Provider, account: str) -> list[str | bytes]:
        """One invoice's script arguments (`worker.intake.script_item`)."""
        return script_item(invoice, provider=provider, account=account)

    async def one(
        self, invoice: Invoice, *, provider: Provider, account: str, batch: str, mode: str
    ) -> tuple[EnqueueOutcome, str]:
        """Enqueue (or, with mode "requeue", requeue) one invoice."""
        head = self.head(provider=provider, account=account, batch=batch, mode=mode)
        reply = await self.script(
            args=[*head, *self.item(invoice, provider=provider, account=account)]
        )
        return next(_outcomes(reply))


def _outcomes(reply: list[bytes | str]) -> Iterator[tuple[EnqueueOutcome, str]]:
    """The script's flat reply as (outcome, state met) pairs."""
    values = [text(v) for v in reply]
    for i in range(0, len(values), 2):
        yield EnqueueOutcome(values[i]), values[i + 1]


async def create_batch(
    redis: aioredis.Redis,
    keys: Keys,
    *,
    provider: Provider,
    account: str,
    name: str | None,
    send: bool,
) -> str:
    """Register a new batch (name, provider, account, created_at_ms); returns its id."""
    batch_id = new_batch_id(name)
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.batch(batch_id),
            mapping={
                "name": name or batch_id,
                "provider": provider.value,
                "account": account,
                "created_at_ms": now_ms,
                "send": int(send),
            },
        )
        pipe.zadd(keys.batches(), {batch_id: now_ms})
        await pipe.execute()
    return batch_id


async def enqueue_invoices(
    redis: aioredis.Redis,
    keys: Keys,
    records: Iterable[Record | RecordError] | AsyncIterable[Record | RecordError],
    *,
    provider: Provider,
    account: str = "default",
    batch: str | None = None,
    send: bool = False,
    chunk_size: int = 500,
    on_progress: Callable[[int], None] | None = None,
) -> EnqueueReport:
    """Enqueue a stream of records as one new batch.

    Args:
        records: parsed records; `RecordError`s are reported, never enqueued.
        provider: the provider every record goes to (a record naming another
            provider is reported invalid).
        batch: a name for the batch; its id is derived from it (or from the time).
        send: ask for every invoice to be sent once created.
        chunk_size: invoices per pipeline round trip.
        on_progress: called after each chunk with the number of records handled so far.

    Returns:
        The batch id and what happened to each record.
    """

    async def feed(run: _Chunked) -> None:
        if isinstance(records, AsyncIterable):
            async for item in records:
                if run.take(item, chunk_size):
                    await run.turn(chunk_size)
        else:
            for item in records:
                if run.take(item, chunk_size):  # no coroutine per record: most need no await
                    await run.turn(chunk_size)

    return await _run(redis, keys, feed, provider, account, batch, send, on_progress)


async def enqueue_batches(
    redis: aioredis.Redis,
    keys: Keys,
    batches: AsyncIterable[Iterable[Prepared | RecordError]],
    *,
    provider: Provider,
    account: str = "default",
    batch: str | None = None,
    send: bool = False,
    chunk_size: int = 500,
    on_progress: Callable[[int], None] | None = None,
) -> EnqueueReport:
    """`enqueue_invoices` of records already checked and serialised (`worker.intake`).

    `batches` yields lists of `Prepared` tuples (made for this `provider`,
    account and `send`) and `RecordError`s, in file order: the report is the
    one `enqueue_invoices` gives for the same records.
    """

    async def feed(run: _Chunked) -> None:
        async for items in batches:
            for item in items:
                if run.take(item, chunk_size):
                    await run.turn(chunk_size)

    return await _run(redis, keys, feed, provider, account, batch, send, on_progress)


async def _run(
    redis: aioredis.Redis,
    keys: Keys,
    feed: Callable[[_Chunked], Awaitable[None]],
    provider: Provider,
    account: str,
    batch: str | None,
    send: bool,
    on_progress: Callable[[int], None] | None,
) -> EnqueueReport:
    """Register the batch, let `feed` fill the chunks, then park the invalid records."""
    batch_id = await create_batch(
        redis, keys, provider=provider, account=account, name=batch, send=send
    )
    report = EnqueueReport(batch_id=batch_id, provider=provider)
    run = _Chunked(Enqueuer(redis, keys), report, account=account, send=send, progress=on_progress)
    try:
        await feed(run)
        await run.flush()
    finally:
        await run.settle()
    await _park_invalid(Enqueuer(redis, keys), report, account=account)
    return report


async def _park_invalid(enqueuer: Enqueuer, report: EnqueueReport, *, account: str) -> None:
    """Dead-letter the invalid records that carry a usable invoice number.

    Their errors (one `RecordError` per problem) are grouped per number, so
    the entry lists every field to fix; `invoicer dlq requeue KEY --payload
    FILE` then supersedes it with the corrected invoice.
    """
    grouped: dict[str, list[RecordError]] = {}
    for error in report.invalid:
        number = error.invoice_number
        if number is not None and _NUMBER.fullmatch(number):
            grouped.setdefault(number, []).append(error)
    items = list(grouped.items())
    head = [enqueuer.env, "", report.provider.value, account, report.batch_id]
    for start in range(0, len(items), INVOICES_PER_CALL):
        args = list(head)
        for number, errors in items[start : start + INVOICES_PER_CALL]:
            args += _reject_args(number, errors, provider=report.provider, account=account)
        replies = await enqueuer.reject(args=args)
        report.invalid_dead_lettered += sum(
            r in ("dead_lettered", b"dead_lettered") for r in replies
        )


def _reject_args(
    number: str, errors: list[RecordError], *, provider: Provider, account: str
) -> list[str]:
    invoice = next((e.invoice for e in errors if e.invoice is not None), None)
    fields = [{"field": e.field or "record", "message": e.message} for e in errors]
    entry = {
        "reason": "invalid",
        "kind": "InvoiceInvalid",
        "message": f"line {errors[0].line}: {len(errors)} problem(s); fix and requeue "
        "with --payload FILE",
        "status": "",
        "code": "",
        "field_errors": json.dumps(fields),
        "attempts": "0",
    }
    payload = invoice.model_dump_json() if invoice is not None else ""
    return [invoice_key(provider, account, number), number, payload, json.dumps(entry)]


@dataclass
class _Chunked:
    """Buffers one chunk of invoices and sends it as one pipeline of script calls.

    The next chunk is prepared while the previous one is in flight (at most
    one at a time, so chunks reach Redis in order and memory stays at two
    chunks): Python's work and Redis's overlap instead of adding up.
    """

    enqueuer: Enqueuer
    report: EnqueueReport
    account: str
    send: bool
    progress: Callable[[int], None] | None = None
    handled: int = 0
    pending: list[Prepared] = field(default_factory=list)
    inflight: asyncio.Task[None] | None = None

    def take(self, item: Record | RecordError | Prepared, chunk_size: int) -> bool:
        """Buffer one record; True when the caller must now `await self.turn(chunk_size)`."""
        self.handled += 1
        if isinstance(item, tuple):  # already checked and serialised by worker.intake
            self.pending.append(item)
            return self._full(chunk_size)
        if isinstance(item, RecordError):
            self.report.invalid.append(item)
            return False
        if item.provider is not None and item.provider != self.report.provider:
            self.report.invalid.append(_wrong_provider(item, self.report.provider))
            return False
        invoice = item.invoice.model_copy(update={"send": True}) if self.send else item.invoice
        args = self.enqueuer.item(invoice, provider=self.report.provider, account=self.account)
        self.pending.append((item.line, invoice.number, args))
        return self._full(chunk_size)

    def _full(self, chunk_size: int) -> bool:
        return len(self.pending) >= chunk_size or (
            self.inflight is not None and len(self.pending) % INVOICES_PER_CALL == 0
        )

    async def turn(self, chunk_size: int) -> None:
        """Send a full chunk, or give the chunk in flight a turn (socket writes, reply)."""
        if len(self.pending) >= chunk_size:
            await self.flush()
        else:
            await asyncio.sleep(0)

    async def flush(self) -> None:
        chunk, self.pending = self.pending, []
        await self.settle()
        if chunk:
            self.inflight = asyncio.create_task(self._send(chunk, self.handled))
            await asyncio.sleep(0)  # let it start writing before we build the next chunk
        elif self.progress is not None:
            self.progress(self.handled)

    async def settle(self) -> None:
        """Wait for the chunk in flight (cancelled if we are being cancelled)."""
        task, self.inflight = self.inflight, None
        if task is not None:
            await task

    async def _send(self, chunk: list[Prepared], handled: int) -> None:
        head = self.enqueuer.head(
            provider=self.report.provider,
            account=self.account,
            batch=self.report.batch_id,
            mode="enqueue",
        )
        async with self.enqueuer.redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(chunk), INVOICES_PER_CALL):
                args: list[str | bytes] = list(head)
                for _, _, item in chunk[start : start + INVOICES_PER_CALL]:
                    args += item
                await self.enqueuer.script(args=args, client=pipe)
            replies = await pipe.execute()
        outcomes = (o for reply in replies for o in _outcomes(reply))
        for (line, number, _), (outcome, state) in zip(chunk, outcomes, strict=True):
            self.report.count(outcome, line, number, state)
        if self.progress is not None:
            self.progress(handled)


def _wrong_provider(item: Record, provider: Provider) -> RecordError:
    return RecordError(
        line=item.line,
        message=f"record is for {item.provider}, this batch is for {provider.value}",
        field="provider",
        invoice_number=item.invoice.number,
    )
