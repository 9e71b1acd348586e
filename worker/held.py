"""A ledger record held by the worker running its job, and every change it makes.

A worker holds a record through a `HeldEntry` (a `jobs.ports.LedgerEntry`),
from `Ledger.claim` until `release`, with a lease token: every change it
makes is one script (`worker/lua/held.lua`, `dead_letter.lua`) that first
compares that token, so a worker that lost its lease (it stalled and the
reaper handed the job on) can no longer touch the record. The claims and
changes of concurrent jobs share round trips (`worker.transitions`).

A lease says who holds a record, not whether its request is done: a holder
never starts a request unless its lease is still valid by its own clock,
with a margin (`HeldEntry.ensure_lease`), and while a record is `sending`
every renewal moves its landing window (`landing_until_ms`) on, so a later
holder knows until when a request of ours may still land
(docs/operations.md, "The landing window").

This module never calls a provider and never decides retries: the runner
does (`worker.retry_policy`), through `HeldEntry`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from time import monotonic

from jobs.errors import ErrorInfo, NotYet
from jobs.models import InvoiceReceipt, Provider
from jobs.ports import Claim, Verification
from worker.error_json import error_to_json
from worker.pauses import PauseState
from worker.replies import text
from worker.transitions import InvalidTransition, LeaseLost, Transitions

__all__ = ["HeldEntry", "InvalidTransition", "LeaseLost"]


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
    deadline: float = 0.0
    """When the lease ends by this process's clock (`monotonic()`), set
    conservatively: from the time *before* the script that granted or renewed
    it was sent, plus the lease."""
    request_started: bool = False
    """`ensure_lease` let a request go: one may be in flight from then on."""
    _premarked: bool = False
    _released: bool = False

    async def ensure_lease(self) -> None:
        """Make sure the lease is valid, with a margin, for a request starting now.

        No round trip while the lease is far from its end; close to it, one
        renewal (`LeaseLost` if another holder took over).

        Raises:
            NotYet: still too close after renewing (a slow Redis): the job is
                given up and runs again, rather than start a request that
                could outlive a lease nobody can see.
            LeaseLost: another worker holds the record now.
        """
        margin_s = self._transitions.margin_s
        if monotonic() + margin_s > self.deadline:
            await self._transitions.change(self, "heartbeat")
            if monotonic() + margin_s > self.deadline:
                raise NotYet(0.0, "lease too close to its end to start a request")
        self.request_started = True
        if self._transitions.on_request is not None:
            self._transitions.on_request(self.invoice_key, self.job_id)

    async def mark_sending(self) -> None:
        """`queued|in_doubt -> sending`: a create request is about to leave.

        A no-op (no round trip) the first time after a claim that already
        marked the record `sending` (`Ledger.claim(..., early_sending=True)`).
        """
        if self._premarked:
            self._premarked = False
            return
        await self._transitions.change(self, "sending")

    async def mark_created(self, receipt: InvoiceReceipt, *, verified: bool = True) -> float:
        """`sending|in_doubt|queued -> created` (or `sent` if the receipt says so).

        Args:
            verified: False after an unknown outcome: the record becomes
                unverified, to be looked up again once its landing window passed.

        Returns:
            Seconds until that verification is due (0.0 when verified).
        """
        self._premarked = False
        flag = self.release_when_done
        reply = await self._transitions.change(
            self, "created", receipt.model_dump_json(), flag=flag, aux="" if verified else "1"
        )
        self._released = len(reply) > 2 and text(reply[2]) == "released"
        return int(text(reply[3])) / 1000 if len(reply) > 3 else 0.0

    async def mark_verified(self, verification: Verification) -> None:
        """An unverified record's copies were resolved: store the keeper, count
        the voided copies, put the open ones on the operator list."""
        v = verification
        data = {
            "keeper": v.keeper.provider_id,
            "sent": v.keeper.sent,
            "voided": [
                {"id": d.provider_id, "status": d.status, "found": found}
                for found, group in ((False, v.voided), (True, v.found_voided))
                for d in group
            ],
            "open": [
                {"id": d.provider_id, "status": d.status, "sent": d.sent, "why": d.why}
                for d in v.open
            ],
            "why": v.why,
        }
        await self._transitions.change(
            self, "verified", json.dumps(data), aux=v.keeper.model_dump_json()
        )

    async def mark_verify_later(self, why: str) -> int:
        """Postpone the verification (nothing voided on a view that lags); tries so far."""
        reply = await self._transitions.change(self, "verify_later", why)
        return int(text(reply[3]))

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

    async def wait(self, why: str) -> None:
        """The job will run again later, and nothing failed (`jobs.errors.NotYet`,
        or a cancellation before any request left): `sending -> queued`, other
        states stay. Releases the record in the same step.

        Only for a holder none of whose create requests may be in flight.
        """
        await self._transitions.change(self, "wait", why)
        self._released = True

    async def dead_letter(
        self,
        error: ErrorInfo,
        *,
        attempts: int,
        exhausted: bool | None = None,
        may_have_landed: bool | None = None,
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
            may_have_landed: a create of this holder's may have reached the
                provider (a `sending` record then stays in doubt); `None`
                infers it from `error` (only a permanent one proves it did not).
        """
        await self._transitions.dead_letter(
            self, error, attempts=attempts, exhausted=exhausted, may_have_landed=may_have_landed
        )

    async def release(self) -> None:
        """Give the record back (job finished or deferred).

        If the record still needs work and its arq job is gone (another run of
        the same job finished it meanwhile), the job is written again. A no-op
        when `mark_created` already released it. A holder interrupted with a
        request in flight needs no delay here: the next claim may look up at
        once, and waits for the record's landing window itself.
        """
        if self._released:
            return
        await self._transitions.change(self, "release")
