"""The operator list: invoices with a duplicate at the provider that we could not void.

Verification (`jobs.verify`) voids every unsent late twin of an invoice. A
twin the customer was sent, or one the provider will not void (paid), stays
live: the `verified` transition (worker/lua/held.lua) then writes one entry
per invoice here, with the keeper's id and every other copy's id and status,
so a person can credit or cancel it at the provider. It is never silent:
`invoicer status` shows how many there are, the batch report counts them,
and `invoicer duplicates` lists them (docs/operations.md, "The operator list").

This module only reads the list and lets a person mark an entry handled; it
never calls a provider.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis

from worker.keys import Keys
from worker.replies import RawHash, decoded, text


@dataclass(frozen=True)
class OpenCopy:
    """A copy left live at the provider, beside the keeper."""

    provider_id: str
    status: str
    sent: bool
    why: str


@dataclass(frozen=True)
class DuplicateEntry:
    """One invoice on the operator list."""

    invoice_key: str
    number: str
    provider: str
    batch: str
    keeper: str
    """The provider id of the copy the ledger kept."""
    copies: tuple[OpenCopy, ...]
    why: str
    """Why it is listed when no copy is open (a listing that never showed ours)."""
    at_ms: int

    @classmethod
    def parse(cls, raw: RawHash) -> DuplicateEntry:
        """An entry from its hash as HGETALL returns it."""
        h = decoded(raw)
        # Lua's cjson writes an empty list as `{}`.
        copies = json.loads(h.get("copies") or "[]") or []
        return cls(
            invoice_key=h["invoice_key"],
            number=h.get("number", ""),
            provider=h.get("provider", ""),
            batch=h.get("batch", ""),
            keeper=h.get("keeper", ""),
            copies=tuple(
                OpenCopy(c["id"], c.get("status", ""), bool(c.get("sent")), c.get("why", ""))
                for c in copies
            ),
            why=h.get("why", ""),
            at_ms=int(h.get("at_ms") or 0),
        )

    def as_dict(self) -> dict[str, object]:
        """Plain data, for `--json`."""
        return {
            "invoice_key": self.invoice_key,
            "number": self.number,
            "provider": self.provider,
            "batch": self.batch,
            "keeper": self.keeper,
            "copies": [
                {"provider_id": c.provider_id, "status": c.status, "sent": c.sent, "why": c.why}
                for c in self.copies
            ],
            "why": self.why,
            "at_ms": self.at_ms,
        }


class Duplicates:
    """The operator list on one Redis."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def count(self) -> int:
        """How many invoices are on the list."""
        return int(await self.redis.zcard(self.keys.duplicates()))

    async def list(self, *, offset: int = 0, limit: int = 100) -> list[DuplicateEntry]:
        """Entries, newest first."""
        members = await self.redis.zrevrange(self.keys.duplicates(), offset, offset + limit - 1)
        invoice_keys = [text(m) for m in members]
        async with self.redis.pipeline(transaction=False) as pipe:
            for invoice_key in invoice_keys:
                pipe.hgetall(self.keys.duplicate(invoice_key))
            raws = await pipe.execute()
        return [DuplicateEntry.parse(raw) for raw in raws if raw]

    async def get(self, invoice_key: str) -> DuplicateEntry | None:
        """The entry of `invoice_key`, or `None`."""
        raw = self.redis.hgetall(self.keys.duplicate(invoice_key))
        found = await cast(Awaitable[RawHash], raw)
        return DuplicateEntry.parse(found) if found else None

    async def resolve(self, invoice_key: str) -> bool:
        """A person dealt with it at the provider: take it off the list.

        Returns False when it was not listed. The batch's `duplicates_open`
        counter keeps its count: it says how many were found.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.duplicates(), invoice_key)
            pipe.delete(self.keys.duplicate(invoice_key))
            removed, _ = await pipe.execute()
        return bool(removed)
