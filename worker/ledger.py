"""The Redis ledger: one record per invoice, changed only by atomic scripts.

The ledger, not arq, is what makes "exactly once" hold: a record says whether
an invoice is queued, being created (`sending`), created, sent, in doubt,
rejected or discarded, and every change is one Lua script (`worker/lua/`)
that also moves the batch and global counters, appends to the invoice's
history and, for finished invoices, to the provider's throughput set.

This module reads records (`LedgerRecord`, for status, reports and the
dashboard) and hands them to workers: `claim` takes one with a lease and
returns the `worker.held.HeldEntry` through which the worker changes it;
`reap_expired` hands back the jobs of workers that died. It never calls a
provider and never decides retries.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

import redis.asyncio as aioredis
from pydantic import ValidationError

from jobs.errors import ErrorInfo
from jobs.models import InvoiceReceipt, Provider
from jobs.ports import Claim
from worker.error_json import error_from_json
from worker.held import HeldEntry
from worker.keys import InvoiceKey, Keys
from worker.pauses import pause_from_read
from worker.replies import RawHash, decoded, text
from worker.transitions import Transitions


class State(StrEnum):
    """Where an invoice is in its life."""

    QUEUED = "queued"
    SENDING = "sending"
    CREATED = "created"
    SENT = "sent"
    IN_DOUBT = "in_doubt"
    REJECTED = "rejected"
    DISCARDED = "discarded"


@dataclass(frozen=True)
class LedgerRecord:
    """Read model of one invoice, for status, reports and the dashboard."""

    invoice_key: str
    state: State
    provider: Provider
    account: str
    number: str
    batch: str
    generation: int
    job_id: str
    fingerprint: str
    payload: str
    receipt: InvoiceReceipt | None
    error: ErrorInfo | None
    failures: int
    first_at_ms: int
    updated_at_ms: int
    send_started: bool
    dead_lettered: bool
    landing_until_ms: int = 0
    """Until when a create request of ours may still land (0: none left)."""
    unverified: bool = False
    """Created after an unknown outcome, not yet looked up again."""
    verify_after_ms: int = 0
    voided_ids: tuple[str, ...] = ()
    """Duplicate copies voided by this invoice's verifications."""
    supersedes: str | None = None
    """The earlier batch this record was taken over from (worker/lua/common.lua, take_over)."""
    open_ids: tuple[str, ...] = ()
    """Duplicate copies left live (sent or paid): on the operator list."""

    @classmethod
    def parse(cls, invoice_key: str, raw: RawHash) -> LedgerRecord:
        """Build a record from the ledger hash as HGETALL returns it."""
        h = decoded(raw)
        return cls(
            invoice_key=invoice_key,
            state=State(h["state"]),
            provider=Provider(h["provider"]),
            account=h["account"],
            number=h["number"],
            batch=h["batch"],
            generation=int(h["generation"]),
            job_id=h["job_id"],
            fingerprint=h["fp"],
            payload=h["payload"],
            receipt=InvoiceReceipt.model_validate_json(h["receipt"]) if h.get("receipt") else None,
            error=error_from_json(h["error"]) if h.get("error") else None,
            failures=int(h.get("failures") or 0),
            first_at_ms=int(h.get("first_at_ms") or 0),
            updated_at_ms=int(h.get("updated_at_ms") or 0),
            send_started=h.get("send_started") == "1",
            dead_lettered=h.get("dlq") == "1",
            landing_until_ms=int(h.get("landing_until_ms") or 0),
            unverified=h.get("unverified") == "1",
            verify_after_ms=int(h.get("verify_after_ms") or 0),
            voided_ids=_ids(h.get("voided_ids")),
            open_ids=_ids(h.get("open_ids")),
            supersedes=h.get("supersedes") or None,
        )


class UnreadableRecord(Exception):
    """A claimed record holds a field that does not parse: the claim's lease
    is held (`held` can dead-letter it), but nothing else about it is known."""

    def __init__(self, held: HeldEntry, why: str) -> None:
        super().__init__(f"{held.invoice_key}: {why}")
        self.held = held
        self.why = why


def unreadable(exc: ValueError) -> str:
    """What did not parse, in a line (pydantic's errors without the values they quote)."""
    if isinstance(exc, ValidationError):
        problems = [f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()]
        return f"{exc.title}: " + "; ".join(problems[:3])
    return str(exc)[:300]


def _owner(invoice_key: str) -> tuple[Provider, str]:
    try:
        parts = InvoiceKey.parse(invoice_key)
    except ValueError:
        return Provider.MAAST, "default"  # only names the entry: a dead letter reads the record
    return parts.provider, parts.account


class Ledger:
    """The invoice ledger on one Redis."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        lease_s: float = 10.0,
        landing_window_s: float = 300.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.transitions = Transitions(
            redis, keys, lease_ms=int(lease_s * 1000), window_ms=int(landing_window_s * 1000)
        )

    async def get(self, invoice_key: str) -> LedgerRecord | None:
        """The record of `invoice_key`, or `None`."""
        raw = await cast(Awaitable[RawHash], self.redis.hgetall(self.keys.ledger(invoice_key)))
        return LedgerRecord.parse(invoice_key, raw) if raw else None

    async def exists(self, invoice_key: str) -> bool:
        """Whether the ledger has a record of `invoice_key`."""
        return bool(await self.redis.exists(self.keys.ledger(invoice_key)))

    async def get_many(self, invoice_keys: Sequence[str]) -> list[LedgerRecord | None]:
        """Records of many invoices in one round trip, in order."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for invoice_key in invoice_keys:
                pipe.hgetall(self.keys.ledger(invoice_key))
            raws = await pipe.execute()
        return [
            LedgerRecord.parse(k, raw) if raw else None
            for k, raw in zip(invoice_keys, raws, strict=True)
        ]

    async def history(self, invoice_key: str) -> list[dict[str, object]]:
        """The invoice's last 50 events, oldest first: at_ms, event, state, detail."""
        history = self.redis.lrange(self.keys.history(invoice_key), 0, -1)
        items = await cast(Awaitable[list[bytes | str]], history)
        return [json.loads(item) for item in items]

    async def claim(
        self,
        invoice_key: str,
        job_id: str,
        *,
        early_sending: bool = False,
        pause_key: str | None = None,
    ) -> HeldEntry | None:
        """Take the record for the run of job `job_id`, with a lease.

        Returns `None` when there is nothing to do: no record, a superseded
        job, a dead-lettered or finished invoice, or another worker holding a
        live lease. A `sending` record (its holder died) becomes `in_doubt`.

        Args:
            early_sending: mark a plain `queued` record (no lookup pending)
                `sending` in the same script, unless the provider is paused;
                the entry's first `mark_sending` is then free. Conservative:
                a job that dies before its request leaves costs a lookup.
            pause_key: also read this pause flag (`HeldEntry.pause`), saving
                the limiter its own probe.

        Raises:
            UnreadableRecord: the record was claimed but a field does not
                parse; its `held` can still dead-letter it.
        """
        t = self.transitions
        token = secrets.token_hex(8)
        args: list[str | int] = [t.env, "", invoice_key, job_id, token, t.lease_ms]
        args += ["1" if early_sending else "0", pause_key or "", t.window_ms]
        started = time.monotonic()
        r = [text(v) for v in await t.batch(t.scripts.claim, args)]
        if r[0] != "held":
            return None
        try:
            return self._held(invoice_key, job_id, token, r, pause_key, started)
        except ValueError as exc:  # pydantic's ValidationError is one too
            provider, account = _owner(invoice_key)
            held = HeldEntry(
                invoice_key,
                job_id,
                token,
                Claim(),
                "",
                provider,
                account,
                "",
                0,
                0,
                t,
                deadline=started + t.lease_ms / 1000,
            )
            raise UnreadableRecord(held, unreadable(exc)) from None

    def _held(
        self,
        invoice_key: str,
        job_id: str,
        token: str,
        r: list[str],
        pause_key: str | None,
        started: float,
    ) -> HeldEntry:
        """The entry a claim's reply describes (ValueError: a field does not parse)."""
        t = self.transitions
        return HeldEntry(
            invoice_key=invoice_key,
            job_id=job_id,
            token=token,
            claim=_claim_of(r, t.window_ms),
            payload=r[5],
            provider=Provider(r[6]),
            account=r[7],
            batch=r[8],
            failures=int(r[9]),
            first_at_ms=int(r[10]),
            _transitions=t,
            pause_read=bool(pause_key),
            pause=pause_from_read(int(r[12]), int(r[14]), r[13]) if pause_key else None,
            deadline=started + t.lease_ms / 1000,
            _premarked=r[11] == "1",
        )

    async def heartbeat(self, held: Iterable[HeldEntry]) -> None:
        """Extend the leases of entries this process still holds (one pipeline)."""
        await self.transitions.heartbeat(held)

    async def reap_expired(self, now_ms: int | None = None, limit: int = 100) -> list[str]:
        """Hand back the jobs of expired leases; returns the invoice keys reaped.

        A `sending` record becomes `in_doubt`, arq's in-progress key is
        deleted and the job is made due now (written again if it is gone), so
        any worker reconciles it within a poll instead of after arq's timeout.
        """
        now = "" if now_ms is None else str(now_ms)
        t = self.transitions
        reply = await t.scripts.reap(args=[t.env, now, limit])
        return [text(v) for v in reply]


def _claim_of(r: Sequence[str], window_ms: int) -> Claim:
    """The `Claim` in a `held` reply of worker/lua/claim.lua."""
    state, receipt_json, send_started, lookup = State(r[1]), r[2], r[3] == "1", r[4] == "1"
    receipt = InvoiceReceipt.model_validate_json(receipt_json) if receipt_json else None
    now_ms, landing_until_ms = int(r[14]), int(r[15])
    if state is State.IN_DOUBT and landing_until_ms == 0:
        # In doubt since before the ledger kept landing windows: assume its
        # request left just now rather than that nothing can still land.
        landing_until_ms = now_ms + window_ms
    created = state in (State.CREATED, State.SENT)
    return Claim(
        receipt=receipt if created else None,
        create_maybe_landed=state is State.IN_DOUBT or (state is State.QUEUED and lookup),
        send_maybe_landed=state is State.CREATED and send_started,
        now_ms=now_ms,
        landing_until_ms=landing_until_ms,
        unverified=r[16] == "1",
        verify_after_ms=int(r[17]),
        voided_ids=frozenset(_ids(r[18])),
        verify_tries=int(r[19]),
    )


def _ids(joined: str | None) -> tuple[str, ...]:
    """Provider ids as the scripts store them (comma-joined)."""
    return tuple(i for i in (joined or "").split(",") if i)
