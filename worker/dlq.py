"""The dead-letter queue: invoices parked for a person, and what a person can do.

Entries (`worker.dead_letter`) are written with the ledger change that parks
an invoice; this module lists and reads them, requeues them (through the same
enqueue script as a bulk run, so a requeue supersedes the old job with a new
generation and can never create a duplicate), discards them and exports them
as CSV. It never calls a provider.
"""

from __future__ import annotations

import builtins
import csv
from collections.abc import AsyncIterator, Awaitable
from typing import TextIO, cast

import redis.asyncio as aioredis

from jobs.models import Invoice, Provider
from worker.dead_letter import CSV_COLUMNS, DeadLetter
from worker.enqueue import EnqueueOutcome, Enqueuer
from worker.keys import Keys
from worker.lua import Scripts
from worker.replies import RawHash, decoded, text

PAGE_SIZE = 200
"""Entries read per round trip while filtering."""


class DeadLetters:
    """The dead-letter queue on one Redis."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.enqueuer = Enqueuer(redis, keys)
        self.discard_script = Scripts.register(redis).discard

    async def count(self, *, batch: str | None = None, reason: str | None = None) -> int:
        """How many invoices are parked (of one batch and/or with one reason): one read."""
        return int(await self.redis.zcard(self._index(batch=batch, reason=reason)))

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
        """Entries, newest first, optionally of one batch, reason and/or provider."""
        found: list[DeadLetter] = []
        skipped = 0
        # Without a provider filter the index holds exactly the matches: start
        # at `offset` in it instead of reading the entries before.
        exact = provider is None
        start = offset if exact else 0
        # A page of the list reads no more entries than it shows.
        size = min(PAGE_SIZE, limit) if exact else PAGE_SIZE
        async for entry in self._scan(
            batch=batch, reason=reason, provider=provider, start=start, page_size=size
        ):
            if not exact and skipped < offset:
                skipped += 1
                continue
            found.append(entry)
            if len(found) >= limit:
                break
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
                f"{invoice_key} never parsed as an invoice: requeue it with a corrected payload"
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
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        rows = 0
        async for entry in self._scan(batch=batch, reason=reason):
            writer.writerow(entry.csv_row())
            rows += 1
        return rows

    def _index(self, *, batch: str | None = None, reason: str | None = None) -> str:
        """The maintained index holding exactly the entries of `batch` and/or `reason`."""
        if batch is not None and reason is not None:
            return self.keys.dead_letters_of_batch_reason(batch, reason)
        if reason is not None:
            return self.keys.dead_letters_by_reason(reason)
        if batch is not None:
            return self.keys.dead_letters_of_batch(batch)
        return self.keys.dead_letters()

    async def _scan(
        self,
        *,
        batch: str | None = None,
        reason: str | None = None,
        provider: Provider | None = None,
        start: int = 0,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[DeadLetter]:
        """Entries newest first from rank `start` of the index of `batch` and/or
        `reason` (or all), `provider` checked here; never KEYS."""
        index = self._index(batch=batch, reason=reason)
        while page := await self._page(index, start, page_size):
            for entry in page:
                if entry is None:  # removed between the index read and the entry read
                    continue
                if (
                    (batch is None or entry.batch == batch)
                    and (reason is None or entry.reason == reason)
                    and (provider is None or entry.provider is provider)
                ):
                    yield entry
            start += page_size

    async def _page(
        self, index: str, start: int, size: int = PAGE_SIZE
    ) -> builtins.list[DeadLetter | None]:
        """Entries `start .. start+size` of `index` (newest first); None where one vanished."""
        keys = await self.redis.zrevrange(index, start, start + size - 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(self.keys.dead_letter(text(key)))
            raws = await pipe.execute()
        return [DeadLetter.parse(raw) if raw else None for raw in raws]
