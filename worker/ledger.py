"""The Redis ledger: one record per invoice, changed only by atomic scripts.

The ledger, not arq, is what makes "exactly once" hold: a record says whether
an invoice is queued, being created (`sending`), created, sent, in doubt,
rejected or discarded, and every change is one Lua script (`worker/lua/`)
that also moves the batch and global counters, appends to the invoice's
history and, for finished invoices, to the provider's throughput set. A
worker holds a record through a `HeldEntry` with a lease token: every change
it makes is a compare-and-set on that token, so a worker that lost its lease
(it stalled and the reaper handed the job on) can no longer touch the record.

This module never calls a provider and never decides retries: the runner
does, through `HeldEntry`, which implements `jobs.ports.LedgerEntry`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast

import redis.asyncio as aioredis

from jobs.errors import ErrorInfo
from jobs.models import InvoiceReceipt, Provider
from jobs.ports import Claim
from worker.dead_letter import entry_fields
from worker.error_json import error_from_json, error_to_json
from worker.keys import Keys
from worker.limits import PauseState, pause_from_read
from worker.lua import ScriptBatch, Scripts, script_env
from worker.replies import RawHash, decoded, text
from worker.retry_policy import PERMANENT_REASONS, TRANSIENT_REASONS

BATCH_WINDOW_S = 0.002
"""How long a claim or transition waits for those of other jobs to share its
round trip: under load ~5 calls go together (a round trip costs the worker
~70 us of CPU); alone, a call is 2 ms later, well within the pickup budget."""


class State(StrEnum):
    """Where an invoice is in its life."""

    QUEUED = "queued"
    SENDING = "sending"
    CREATED = "created"
    SENT = "sent"
    IN_DOUBT = "in_doubt"
    REJECTED = "rejected"
    DISCARDED = "discarded"


class LeaseLost(Exception):
    """Another worker took this invoice over; stop touching it."""


class InvalidTransition(RuntimeError):
    """A holder asked for a change its record's state does not allow (a bug)."""


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
        )


@dataclass(eq=False)
class HeldEntry:
    """One invoice held by the worker running its job (a `jobs.ports.LedgerEntry`).

    Every method is one script that first checks this entry's lease token and
    raises `LeaseLost` if another holder took over. `failures` is the count at
    claim time; it is not updated by later calls. Hashable by identity.
    """

    invoice_key: str
    job_id: str
    token: str
    claim: Claim
    payload: str
    provider: Provider
    account: str
    batch: str
    failures: int
    first_at_ms: int
    _ledger: Ledger = field(repr=False)
    pause_read: bool = False
    """The claim read the provider's pause flag: `pause` is what it found."""
    pause: PauseState | None = None
    """The provider's pause as the claim saw it (`None`: not paused, or not read)."""
    release_when_done: bool = False
    """Set by the holder when nothing follows a create (no send): `mark_created`
    then releases the record in the same script and `release` is a no-op."""
    _premarked: bool = False
    _released: bool = False

    async def mark_sending(self) -> None:
        """`queued|in_doubt -> sending`: a create request is about to leave.

        A no-op (no round trip) the first time after a claim that already
        marked the record `sending` (`Ledger.claim(..., early_sending=True)`).
        """
        if self._premarked:
            self._premarked = False
            return
        await self._ledger.change(self, "sending")

    async def mark_created(self, receipt: InvoiceReceipt) -> None:
        """`sending|in_doubt|queued -> created` (or `sent` if the receipt says so)."""
        self._premarked = False
        flag = self.release_when_done
        reply = await self._ledger.change(self, "created", receipt.model_dump_json(), flag=flag)
        self._released = len(reply) > 2 and text(reply[2]) == "released"

    async def mark_send_started(self) -> None:
        """On a created record: a send request is about to leave."""
        await self._ledger.change(self, "send_started")

    async def mark_sent(self, receipt: InvoiceReceipt) -> None:
        """`created -> sent`."""
        await self._ledger.change(self, "sent", receipt.model_dump_json())

    async def mark_in_doubt(self, error: ErrorInfo) -> None:
        """The request may have landed; counts a failure and stores `error`.

        `sending -> in_doubt`; a created record (its send may have landed)
        stays created, and its next claim looks the invoice up before sending.
        """
        await self._ledger.change(self, "in_doubt", error_to_json(error), count_failure=True)

    async def retry_later(self, error: ErrorInfo | None, *, count_failure: bool) -> None:
        """The job will run again: `sending -> queued` (the request provably did
        not land); `in_doubt`, `queued` and `created` stay as they are."""
        data = error_to_json(error) if error is not None else ""
        await self._ledger.change(self, "retry", data, count_failure=count_failure)

    async def dead_letter(
        self, error: ErrorInfo, *, attempts: int, exhausted: bool | None = None
    ) -> None:
        """Park the invoice for a person, writing its dead-letter entry.

        The state becomes `rejected`, except that an invoice that may exist at
        the provider stays (or becomes) `in_doubt` (entry reason "in_doubt"),
        and a created one stays created (its send failed).

        Args:
            error: the last error.
            attempts: failed attempts so far, for the entry.
            exhausted: the retry budget ran out (entry reason "exhausted");
                `None` infers it from a transient `error`.
        """
        await self._ledger.dead_letter(self, error, attempts=attempts, exhausted=exhausted)

    async def release(self, *, retry_not_before_s: float | None = None) -> None:
        """Give the record back (job finished or deferred).

        If the record still needs work and its arq job is gone (another run of
        the same job finished it meanwhile), the job is written again. A no-op
        when `mark_created` already released it.

        Args:
            retry_not_before_s: the holder was interrupted with a request
                maybe in flight (`sending`, or a send started): its job runs
                again no sooner than this, so the request can land before the
                next claim looks the invoice up.
        """
        if self._released:
            return
        wait_ms = "" if retry_not_before_s is None else str(int(retry_not_before_s * 1000))
        await self._ledger.change(self, "release", wait_ms)


class Ledger:
    """The invoice ledger on one Redis."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, lease_s: float = 10.0) -> None:
        self.redis = redis
        self.keys = keys
        self.lease_ms = int(lease_s * 1000)
        self.scripts = Scripts.register(redis)
        # Claims and transitions of concurrent jobs share round trips.
        self._batch = ScriptBatch(redis, window_s=BATCH_WINDOW_S)
        self.env = script_env(keys)

    async def get(self, invoice_key: str) -> LedgerRecord | None:
        """The record of `invoice_key`, or `None`."""
        raw = await cast(Awaitable[RawHash], self.redis.hgetall(self.keys.ledger(invoice_key)))
        return LedgerRecord.parse(invoice_key, raw) if raw else None

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
        """
        token = secrets.token_hex(8)
        args: list[str | int] = [self.env, "", invoice_key, job_id, token, self.lease_ms]
        if early_sending or pause_key:
            args += ["1" if early_sending else "0", pause_key or ""]
        r = [text(v) for v in await self._batch(self.scripts.claim, args)]
        if r[0] != "held":
            return None
        state, receipt_json, send_started, lookup = State(r[1]), r[2], r[3] == "1", r[4] == "1"
        receipt = InvoiceReceipt.model_validate_json(receipt_json) if receipt_json else None
        claim = Claim(
            receipt=receipt if state is State.CREATED else None,
            create_maybe_landed=state is State.IN_DOUBT or (state is State.QUEUED and lookup),
            send_maybe_landed=state is State.CREATED and send_started,
        )
        return HeldEntry(
            invoice_key=invoice_key,
            job_id=job_id,
            token=token,
            claim=claim,
            payload=r[5],
            provider=Provider(r[6]),
            account=r[7],
            batch=r[8],
            failures=int(r[9]),
            first_at_ms=int(r[10]),
            _ledger=self,
            pause_read=bool(pause_key),
            pause=pause_from_read(int(r[12]), int(r[14]), r[13]) if pause_key else None,
            _premarked=r[11] == "1",
        )

    async def heartbeat(self, held: Iterable[HeldEntry]) -> None:
        """Extend the leases of entries this process still holds (one pipeline)."""
        entries = list(held)
        if not entries:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                await self.scripts.held(args=self._held_args(entry, "heartbeat"), client=pipe)
            await pipe.execute()

    async def reap_expired(self, now_ms: int | None = None, limit: int = 100) -> list[str]:
        """Hand back the jobs of expired leases; returns the invoice keys reaped.

        A `sending` record becomes `in_doubt`, arq's in-progress key is
        deleted and the job is made due now (written again if it is gone), so
        any worker reconciles it within a poll instead of after arq's timeout.
        """
        now = "" if now_ms is None else str(now_ms)
        reply = await self.scripts.reap(args=[self.env, now, limit])
        return [text(v) for v in reply]

    async def change(
        self,
        entry: HeldEntry,
        op: str,
        data: str = "",
        *,
        count_failure: bool = False,
        flag: bool | None = None,
    ) -> Sequence[bytes | str]:
        """Run one held-entry transition (see `worker/lua/held.lua`); its reply.

        `flag` is the script's op-specific flag (default: `count_failure`).
        """
        flagged = count_failure if flag is None else flag
        reply: Sequence[bytes | str] = await self._batch(
            self.scripts.held, self._held_args(entry, op, data, flagged)
        )
        self._check(entry, op, reply)
        return reply

    async def dead_letter(
        self, entry: HeldEntry, error: ErrorInfo, *, attempts: int, exhausted: bool | None
    ) -> None:
        """Dead-letter a held entry (see `HeldEntry.dead_letter`)."""
        if exhausted is None:
            exhausted = error.reason in TRANSIENT_REASONS
        fields = entry_fields(error, attempts=attempts, reason="exhausted" if exhausted else None)
        maybe_landed = "0" if error.reason in PERMANENT_REASONS else "1"
        reply = await self.scripts.dead_letter(
            args=[
                self.env,
                "",
                entry.invoice_key,
                entry.token,
                error_to_json(error),
                fields,
                maybe_landed,
            ]
        )
        self._check(entry, "dead_letter", reply)

    def _held_args(
        self, entry: HeldEntry, op: str, data: str = "", count_failure: bool = False
    ) -> list[str | int]:
        flag = "1" if count_failure else "0"
        return [self.env, "", entry.invoice_key, entry.token, op, self.lease_ms, data, flag]

    @staticmethod
    def _check(entry: HeldEntry, op: str, reply: Sequence[bytes | str]) -> None:
        status = text(reply[0])
        if status == "lost":
            raise LeaseLost(f"{entry.invoice_key}: lease lost")
        if status == "bad":
            raise InvalidTransition(f"{entry.invoice_key}: cannot {op} from {text(reply[1])}")
