"""The dead-letter queue: invoices parked for a person, and what a person can do.

Entries (`worker.dead_letter`) are written with the ledger change that parks
an invoice; this module lists and reads them, requeues them (through the same
enqueue script as a bulk run, so a requeue supersedes the old job with a new
generation and can never create a duplicate), discards them and exports them
as CSV or as the rows they were read from (`worker.dlq_export`). It never
calls a provider.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable
from typing import TextIO, cast

import redis.asyncio as aioredis

from jobs.models import Invoice, Provider
from worker.dead_letter import DeadLetter
from worker.dlq_export import SourceExport, write_list, write_source
from worker.enqueue import EnqueueOutcome, Enqueuer
from worker.keys import Keys
from worker.lua import Scripts
from worker.replies import RawHash, decoded, text

PAGE_SIZE = 200
"""Entries read per round trip while walking an index (bulk actions, export)."""


class DeadLetters:
    """The dead-letter queue on one Redis."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.enqueuer = Enqueuer(redis, keys)
        self.discard_script = Scripts.register(redis).discard

    async def count(
        self,
        *,
        batch: str | None = None,
        reason: str | None = None,
        provider: Provider | None = None,
    ) -> int:
        """How many invoices are parked (of one batch, reason and/or provider): one read."""
        index = await self._index(batch=batch, reason=reason, provider=provider)
        return 0 if index is None else int(await self.redis.zcard(index))

    async def reason_counts(self, *, batch: str | None = None) -> dict[str, int]:
        """How many entries (of `batch`) each reason has, most first (a maintained counter)."""
        counter = (
            self.keys.dead_letter_reasons()
            if batch is None
            else self.keys.dead_letter_reasons_of_batch(batch)
        )
        raw = await cast(Awaitable[RawHash], self.redis.hgetall(counter))
        counts = {reason: int(n) for reason, n in decoded(raw).items() if int(n) > 0}
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    async def get(self, invoice_key: str) -> DeadLetter | None:
        """The entry of `invoice_key`, or `None`."""
        raw = await cast(Awaitable[RawHash], self.redis.hgetall(self.keys.dead_letter(invoice_key)))
        return DeadLetter.parse(raw) if raw else None

    async def list(
        self,
        *,
        batch: str | None = None,
        reason: str | None = None,
        provider: Provider | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[DeadLetter]:
        """Entries, newest first, optionally of one batch, reason and/or provider.

        The index holds exactly the matching entries, so a page is one range
        read at `offset` and one pipeline of entry reads, whatever the size
        of the queue (more only if entries vanish meanwhile).
        """
        index = await self._index(batch=batch, reason=reason, provider=provider)
        found: list[DeadLetter] = []
        start = offset
        while index is not None and len(found) < limit:
            wanted = limit - len(found)
            page = await self._page(index, start, wanted)
            found += [e for e in page if e is not None and _matches(e, batch, reason, provider)]
            if len(page) < wanted:  # the end of the index
                break
            start += len(page)
        return found

    async def requeue(self, invoice_key: str, *, payload: Invoice | None = None) -> EnqueueOutcome:
        """Put a parked invoice back on its queue, with a fresh job, in its batch.

        Args:
            payload: a corrected invoice (same number); default: the stored one.

        Returns:
            SUPERSEDED when a new job was written; ALREADY_CREATED when the
            invoice was created meanwhile (the stale entry is just dropped).

        Raises:
            KeyError: no dead-letter entry for `invoice_key`.
            ValueError: the corrected payload has another invoice number.
        """
        entry = await self.get(invoice_key)
        if entry is None:
            raise KeyError(invoice_key)
        if payload is None and not entry.payload:
            raise ValueError(
                f"{invoice_key} never parsed as an invoice: fix its rows "
                f"(invoicer dlq export --source --batch {entry.batch} --out fix.csv) and "
                "enqueue them again, or requeue it with --payload FILE"
            )
        invoice = payload or Invoice.model_validate_json(entry.payload)
        if invoice.number != entry.number:
            raise ValueError(f"corrected invoice has number {invoice.number}, not {entry.number}")
        account_reply = self.redis.hget(self.keys.ledger(invoice_key), "account")
        account = await cast(Awaitable[bytes | str | None], account_reply)
        outcome, _ = await self.enqueuer.one(
            invoice,
            provider=entry.provider,
            account=text(account) or "default",
            batch=entry.batch,
            mode="requeue",
        )
        return outcome

    async def requeue_many(
        self, *, batch: str | None = None, reason: str | None = None, all: bool = False
    ) -> dict[EnqueueOutcome, int]:
        """Requeue every entry of `batch` and/or `reason`, or every entry with `all=True`."""
        if batch is None and reason is None and not all:
            raise ValueError("name a batch or a reason, or pass all=True")
        keys = [entry.invoice_key async for entry in self._scan(batch=batch, reason=reason)]
        counts: dict[EnqueueOutcome, int] = {}
        for invoice_key in keys:
            try:
                outcome = await self.requeue(invoice_key)
            except KeyError:  # discarded or requeued meanwhile
                continue
            except ValueError:  # needs a corrected payload: left for a person
                continue
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    async def discard(self, invoice_key: str) -> bool:
        """Give up on a parked invoice: `rejected|in_doubt -> discarded`, entry removed.

        A created invoice whose send failed keeps its state; only the entry goes.
        Returns False when there was no entry.
        """
        env = self.enqueuer.env
        return bool(await self.discard_script(args=[env, "", invoice_key]))

    async def discard_many(
        self, *, batch: str | None = None, reason: str | None = None, all: bool = False
    ) -> int:
        """Discard every entry of `batch` and/or `reason` (or all); how many were discarded."""
        if batch is None and reason is None and not all:
            raise ValueError("name a batch or a reason, or pass all=True")
        keys = [entry.invoice_key async for entry in self._scan(batch=batch, reason=reason)]
        discarded = 0
        for invoice_key in keys:
            discarded += await self.discard(invoice_key)
        return discarded

    async def export_csv(
        self, out: TextIO, *, batch: str | None = None, reason: str | None = None
    ) -> int:
        """Write entries as CSV (header + one row each) to `out`; returns the row count."""
        return await write_list(self._scan(batch=batch, reason=reason), out)

    async def export_source(
        self, out: TextIO, *, batch: str | None = None, reason: str | None = None
    ) -> SourceExport:
        """Write the rows the entries' records were read from, in their input format
        (`worker.dlq_export.write_source`: raises `MixedSources`)."""
        return await write_source(self._scan(batch=batch, reason=reason), out)

    async def _index(
        self,
        *,
        batch: str | None = None,
        reason: str | None = None,
        provider: Provider | None = None,
    ) -> str | None:
        """The maintained index holding exactly the entries the filters allow
        (None: provably none, a batch of another provider)."""
        if batch is not None:
            if provider is not None and not await self._batch_is_of(batch, provider):
                return None
            if reason is not None:
                return self.keys.dead_letters_of_batch_reason(batch, reason)
            return self.keys.dead_letters_of_batch(batch)
        if provider is not None:
            if reason is not None:
                return self.keys.dead_letters_of_provider_reason(provider, reason)
            return self.keys.dead_letters_of_provider(provider)
        if reason is not None:
            return self.keys.dead_letters_by_reason(reason)
        return self.keys.dead_letters()

    async def _batch_is_of(self, batch: str, provider: Provider) -> bool:
        """Whether `batch` is `provider`'s (a batch has one provider; an unknown batch may be)."""
        reply = self.redis.hget(self.keys.batch(batch), "provider")
        of = text(await cast(Awaitable[bytes | str | None], reply))
        return of in ("", provider.value)

    async def _scan(
        self,
        *,
        batch: str | None = None,
        reason: str | None = None,
        provider: Provider | None = None,
    ) -> AsyncIterator[DeadLetter]:
        """Every entry the filters allow, newest first, page by page from their index."""
        index = await self._index(batch=batch, reason=reason, provider=provider)
        start = 0
        while index is not None:
            page = await self._page(index, start, PAGE_SIZE)
            for entry in page:
                if entry is not None and _matches(entry, batch, reason, provider):
                    yield entry
            if len(page) < PAGE_SIZE:
                return
            start += len(page)

    async def _page(self, index: str, start: int, size: int) -> builtins.list[DeadLetter | None]:
        """Entries `start .. start+size` of `index` (newest first); None where one vanished."""
        keys = await self.redis.zrevrange(index, start, start + size - 1)
        if not keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(self.keys.dead_letter(text(key)))
            raws = await pipe.execute()
        return [DeadLetter.parse(raw) if raw else None for raw in raws]


def _matches(
    entry: DeadLetter, batch: str | None, reason: str | None, provider: Provider | None
) -> bool:
    """Whether an entry read from an index still has the filters' values (it may have
    been parked again, with another reason, between the index read and the entry read)."""
    return (
        (batch is None or entry.batch == batch)
        and (reason is None or entry.reason == reason)
        and (provider is None or entry.provider is provider)
    )
