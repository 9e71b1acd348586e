"""A ledger record held by the worker running its job, and every change it makes.

A worker holds a record through a `HeldEntry` (a `jobs.ports.LedgerEntry`),
from `Ledger.claim` until `release`, with a lease token: every change it
makes is one script (`worker/lua/held.lua`, `dead_letter.lua`) that first
compares that token, so a worker that lost its lease (it stalled and the
reaper handed the job on) can no longer touch the record. The claims and
changes of concurrent jobs share round trips (`Transitions.batch`).

This module never calls a provider and never decides retries: the runner
does (`worker.retry_policy`), through `HeldEntry`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from jobs.errors import ErrorInfo
from jobs.models import InvoiceReceipt, Provider
from jobs.ports import Claim
from worker.dead_letter import entry_fields
from worker.error_json import error_to_json
from worker.keys import Keys
from worker.lua import ScriptBatch, Scripts, script_env
from worker.pauses import PauseState
from worker.replies import text
from worker.retry_policy import PERMANENT_REASONS, TRANSIENT_REASONS

BATCH_WINDOW_S = 0.002
"""How long a claim or transition waits for those of other jobs to share its
round trip: under load ~5 calls go together (a round trip costs the worker
~70 us of CPU); alone, a call is 2 ms later, well within the pickup budget."""


class LeaseLost(Exception):
    """Another worker took this invoice over; stop touching it."""


class InvalidTransition(RuntimeError):
    """A holder asked for a change its record's state does not allow (a bug)."""


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
    _transitions: Transitions = field(repr=False)
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
        await self._transitions.change(self, "sending")

    async def mark_created(self, receipt: InvoiceReceipt) -> None:
        """`sending|in_doubt|queued -> created` (or `sent` if the receipt says so)."""
        self._premarked = False
        flag = self.release_when_done
        reply = await self._transitions.change(
            self, "created", receipt.model_dump_json(), flag=flag
        )
        self._released = len(reply) > 2 and text(reply[2]) == "released"

    async def mark_send_started(self) -> None:
        """On a created record: a send request is about to leave."""
        await self._transitions.change(self, "send_started")

    async def mark_sent(self, receipt: InvoiceReceipt) -> None:
        """`created -> sent`."""
        await self._transitions.change(self, "sent", receipt.model_dump_json())

    async def mark_in_doubt(self, error: ErrorInfo) -> None:
        """The request may have landed; counts a failure and stores `error`.

        `sending -> in_doubt`; a created record (its send may have landed)
        stays created, and its next claim looks the invoice up before sending.
        """
        await self._transitions.change(self, "in_doubt", error_to_json(error), count_failure=True)

    async def retry_later(self, error: ErrorInfo | None, *, count_failure: bool) -> None:
        """The job will run again: `sending -> queued` (the request provably did
        not land); `in_doubt`, `queued` and `created` stay as they are."""
        data = error_to_json(error) if error is not None else ""
        await self._transitions.change(self, "retry", data, count_failure=count_failure)

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
        await self._transitions.dead_letter(self, error, attempts=attempts, exhausted=exhausted)

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
        await self._transitions.change(self, "release", wait_ms)


class Transitions:
    """The scripts that change held records, on one Redis: shared by a
    `Ledger` and every entry it hands out."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, lease_ms: int) -> None:
        self.redis = redis
        self.lease_ms = lease_ms
        self.scripts = Scripts.register(redis)
        self.env = script_env(keys)
        # Claims and transitions of concurrent jobs share round trips.
        self.batch = ScriptBatch(redis, window_s=BATCH_WINDOW_S)

    async def heartbeat(self, held: Iterable[HeldEntry]) -> None:
        """Extend the leases of entries this process still holds (one pipeline)."""
        entries = list(held)
        if not entries:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                await self.scripts.held(args=self._held_args(entry, "heartbeat"), client=pipe)
            await pipe.execute()

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
        reply: Sequence[bytes | str] = await self.batch(
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
