"""Bulk enqueue: prepared records in, ledger records and arq jobs out, pipelined.

Each invoice is one run of `worker/lua/enqueue.lua`, which decides in one
atomic step whether the invoice is new (ledger record + arq job), a
duplicate, already created, a conflict (same number, other content) or a
retry of a rejected invoice (a new generation with a fresh job id). The runs
are sent in non-transactional pipelines of `chunk_size`, streaming: records
are never all held in memory. Records come checked and serialised by
`worker.intake`; the invalid ones are reported (`worker.enqueue_report`) and
parked as they come, in the same pipelines, by `worker/lua/reject.lua` (its
values: `worker.dead_letter.invalid_entry`). This module never talks to a
provider.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from jobs.models import Invoice, Provider
from jobs.sources import RecordError
from worker.dead_letter import invalid_entry
from worker.durability import confirm_enqueued
from worker.enqueue_report import EnqueueOutcome, EnqueueReport
from worker.epoch import Epoch
from worker.intake import Intake, Prepared, Taken, script_item
from worker.keys import Keys
from worker.lua import INVOICES_PER_CALL, Scripts, script_env
from worker.outage import OUTAGE_ERRORS
from worker.replies import text

__all__ = ["EnqueueInterrupted", "EnqueueOutcome", "EnqueueReport", "Enqueuer", "enqueue"]


class EnqueueInterrupted(Exception):
    """Redis went away in the middle of an enqueue: part of it may be written.

    Running the same enqueue again is safe (it is idempotent) and finishes it.
    """

    def __init__(self, batch_id: str, error: BaseException) -> None:
        super().__init__(
            f"Redis went away during the run ({type(error).__name__}: {error}); "
            f"part of batch {batch_id} may be queued"
        )
        self.batch_id = batch_id


def slug(name: str) -> str:
    """`2026-11 Month End` -> `2026-11-month-end`: a batch name as the start of its id."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]


def new_batch_id(name: str | None = None) -> str:
    """A readable unique batch id: `b-20261122-043012-ab12cd34` or `<name-slug>-ab12cd34`.

    32 random bits: requests naming their batches alike (every POST of a
    month-end run says "month-end") must not meet on one id.
    """
    suffix = secrets.token_hex(4)
    if name and slug(name):
        return f"{slug(name)}-{suffix}"
    return f"b-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{suffix}"


async def create_batch(redis: aioredis.Redis, keys: Keys, intake: Intake, name: str | None) -> str:
    """Register a new batch (name, provider, account, send, created_at_ms); returns its id."""
    batch_id = new_batch_id(name)
    async with redis.pipeline(transaction=True) as pipe:
        register_batch(pipe, keys, intake, name, batch_id)
        await pipe.execute()
    return batch_id


def register_batch(
    pipe: Pipeline, keys: Keys, intake: Intake, name: str | None, batch_id: str
) -> None:
    """Queue on `pipe` what registers batch `batch_id`: its hash and its place in the list."""
    now_ms = int(time.time() * 1000)
    pipe.hset(
        keys.batch(batch_id),
        mapping={
            "name": name or batch_id,
            "provider": intake.provider.value,
            "account": intake.account,
            "created_at_ms": now_ms,
            "send": int(intake.send),
        },
    )
    pipe.zadd(keys.batches(), {batch_id: now_ms})


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

    async def one(
        self, invoice: Invoice, *, provider: Provider, account: str, batch: str, mode: str
    ) -> tuple[EnqueueOutcome, str]:
        """Enqueue (or, with mode "requeue", requeue) one invoice."""
        head = self.head(provider=provider, account=account, batch=batch, mode=mode)
        item = script_item(invoice, provider=provider, account=account)
        return next(_outcomes(await self.script(args=[*head, *item])))


def _outcomes(reply: list[bytes | str]) -> Iterator[tuple[EnqueueOutcome, str]]:
    """The script's flat reply as (outcome, state met) pairs."""
    values = [text(v) for v in reply]
    for i in range(0, len(values), 2):
        yield EnqueueOutcome(values[i]), values[i + 1]


async def enqueue(
    redis: aioredis.Redis,
    keys: Keys,
    items: Iterable[Taken] | AsyncIterable[Iterable[Taken]],
    intake: Intake,
    *,
    batch: str | None = None,
    chunk_size: int = 500,
    on_progress: Callable[[int], None] | None = None,
    lookup_new: bool = False,
    confirm: bool = True,
) -> EnqueueReport:
    """Enqueue records prepared by `worker.intake` as one new batch.

    Args:
        items: what `worker.intake.prepared` made of the records, or batches
            of it (a reader process's frames), in order; `RecordError`s are
            reported, never enqueued, and parked in the dead-letter queue
            when they carry a usable invoice number.
        intake: the provider, account and `send` the items were prepared for.
        batch: a name for the batch; its id is derived from it (or from the time).
        chunk_size: invoices per pipeline round trip.
        on_progress: called after each chunk with the number of items handled so far.
        lookup_new: invoices the ledger did not know are looked up at the
            provider before their create (`invoicer send`: an earlier run
            without a ledger may have created them).
        confirm: wait until the records are on disk, if Redis can say
            (`worker.durability.confirm_enqueued`: up to ~2 s under
            `appendfsync everysec`), and report it (`EnqueueReport.durable`).

    Returns:
        The batch id and what happened to each record.

    Raises:
        SourceError: from the records' source; when raised by its first item
            (an unreadable or empty file), no batch was created.
        EnqueueInterrupted: Redis went away after the batch was registered.
    """
    items = await _started(items)
    epoch = Epoch.of(redis)
    await epoch.env(script_env(keys))  # the instance, checked before the first write
    before = epoch.durability
    batch_id = await create_batch(redis, keys, intake, batch)
    report = EnqueueReport(batch_id=batch_id, provider=intake.provider)
    mode = "direct" if lookup_new else "enqueue"
    run = _Chunked(Enqueuer(redis, keys), report, intake.account, chunk_size, on_progress, mode)
    try:
        await _write(run, items)
        if confirm and before is not None:
            confirmation = await confirm_enqueued(redis, before, last_write_at=time.monotonic())
            report.durable, report.durability = confirmation.durable, confirmation.message
    except OUTAGE_ERRORS as error:
        raise EnqueueInterrupted(batch_id, error) from None
    return report


async def _write(run: _Chunked, items: Iterable[Taken] | AsyncIterable[Iterable[Taken]]) -> None:
    try:
        if isinstance(items, AsyncIterable):
            async for some in items:
                await run.feed(some)
        else:
            await run.feed(items)
        run.close_refused()
        await run.flush()
    finally:
        await run.settle()


async def _started(
    items: Iterable[Taken] | AsyncIterable[Iterable[Taken]],
) -> Iterable[Taken] | AsyncIterable[Iterable[Taken]]:
    """`items`, its first item read already: a file that cannot be read at all
    raises its `SourceError` here, before a batch is registered for it."""
    if not isinstance(items, AsyncIterable):
        rest = iter(items)
        head = next(rest, None)
        return rest if head is None else itertools.chain((head,), rest)
    frames = aiter(items)
    frame = await anext(frames, None)

    async def again() -> AsyncIterator[Iterable[Taken]]:
        if frame is not None:
            yield frame
        async for more in frames:
            yield more

    return again()


@dataclass(frozen=True, slots=True)
class _Refused:
    """An invalid record to park: the reject script's values (`invalid_entry`)."""

    values: list[str]


@dataclass
class _Chunked:
    """Buffers one chunk of script calls and sends it as one pipeline.

    A chunk holds the valid invoices (enqueue script) and the invalid
    records to park (reject script) in input order, so a record is parked
    after the invoices before it, as it would be one by one; parking as we
    go keeps an error-heavy file as fast as a clean one and its memory flat.
    The next chunk is prepared while the previous one is in flight (at most
    one at a time, so chunks reach Redis in order and memory stays at two
    chunks): Python's work and Redis's overlap instead of adding up.
    """

    enqueuer: Enqueuer
    report: EnqueueReport
    account: str
    chunk_size: int
    progress: Callable[[int], None] | None = None
    mode: str = "enqueue"
    handled: int = 0
    pending: list[Prepared | _Refused] = field(default_factory=list)
    inflight: asyncio.Task[None] | None = None
    refusing: list[RecordError] = field(default_factory=list)
    """The problems of the record being read, while its problems keep coming."""
    last_refused: object = None
    """What identifies that record (`_invalid`)."""

    async def feed(self, items: Iterable[Taken]) -> None:
        """Buffer `items`, sending each chunk as it fills."""
        for item in items:
            self.handled += 1
            if isinstance(item, RecordError):
                if not self._invalid(item):
                    continue
            else:
                self.close_refused()
                self.pending.append(item)
            if self._full():  # no coroutine per record: most need no await
                await self.turn()

    def _invalid(self, error: RecordError) -> bool:
        """Note one problem; True when it closed the previous record (now pending)."""
        # The problems of one record come together, each with the record's
        # source: a new source (or, without one, a new line) is a new record.
        record = error.source if error.source is not None else (error.line, error.invoice_number)
        closed = False
        if record != self.last_refused:
            closed = self.close_refused()
            self.report.invalid_records += 1
            self.last_refused = record
        self.refusing.append(error)
        # The report keeps what it prints, not the invoice or the text.
        self.report.invalid.append(
            RecordError(error.line, error.message, error.field, error.invoice_number)
        )
        return closed

    def close_refused(self) -> bool:
        """Queue the record being refused for parking (if it has a usable number)."""
        if not self.refusing:
            return False
        problems, self.refusing, self.last_refused = self.refusing, [], None
        values = invalid_entry(problems, provider=self.report.provider, account=self.account)
        if values is not None:
            self.pending.append(_Refused(values))
        return values is not None

    def _full(self) -> bool:
        return len(self.pending) >= self.chunk_size or (
            self.inflight is not None and len(self.pending) % INVOICES_PER_CALL == 0
        )

    async def turn(self) -> None:
        """Send a full chunk, or give the chunk in flight a turn (socket writes, reply)."""
        if len(self.pending) >= self.chunk_size:
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

    async def _send(self, chunk: list[Prepared | _Refused], handled: int) -> None:
        calls = _calls(chunk)
        provider, batch = self.report.provider, self.report.batch_id
        head = self.enqueuer.head(
            provider=provider, account=self.account, batch=batch, mode=self.mode
        )
        sent = []
        for refused, items in calls:
            args: list[str | int | bytes] = list(head[:-1] if refused else head)
            for item in items:
                args += item.values if isinstance(item, _Refused) else item[2]
            script = self.enqueuer.reject if refused else self.enqueuer.script
            sent.append(script(args=args))
        replies = await asyncio.gather(*sent)  # one pipeline (`worker.lua.ScriptBatch`)
        for (refused, items), reply in zip(calls, replies, strict=True):
            if refused:
                self.report.invalid_dead_lettered += sum(text(r) == "dead_lettered" for r in reply)
                continue
            for item, (outcome, state) in zip(items, _outcomes(reply), strict=True):
                assert not isinstance(item, _Refused)
                self.report.count(outcome, item[0], item[1], state)
        if self.progress is not None:
            self.progress(handled)


def _calls(chunk: list[Prepared | _Refused]) -> list[tuple[bool, list[Prepared | _Refused]]]:
    """The chunk as script calls in order: (parking?, up to INVOICES_PER_CALL items)."""
    calls: list[tuple[bool, list[Prepared | _Refused]]] = []
    for item in chunk:
        refused = isinstance(item, _Refused)
        if not calls or calls[-1][0] != refused or len(calls[-1][1]) >= INVOICES_PER_CALL:
            calls.append((refused, []))
        calls[-1][1].append(item)
    return calls
