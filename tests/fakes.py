"""In-memory fakes of the ports in `jobs/ports.py`, for tests without HTTP.

`FakeProvider` plays the provider's *server* as well as its client: it keeps
the invoices it holds, so a test can tell "the client got an error" apart
from "the request took effect" (`Landed`), which is the whole difficulty of
exactly-once. `FakeLedger` follows the real ledger's state machine closely
enough to hand out the `Claim` the real one would give next, and
`ImmediateLimiter` never waits. All three can write to one shared `Journal`,
so a test can assert the order of calls across them. No Redis, no network.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from jobs.errors import (
    CannotVoid,
    InvoiceConflict,
    InvoiceError,
    InvoiceInvalid,
    NotYet,
    OutcomeUnknown,
    RateLimited,
)
from jobs.models import Invoice, InvoiceReceipt, Provider, keeper_of
from jobs.ports import Claim, PreparedRequest, Verification

CallKind = Literal["create", "find", "find_all", "send", "void"]


class Journal(list[str]):
    """Every call the fakes saw, in order, as short words (`provider.create`)."""


@dataclass(frozen=True)
class Ok:
    """Scripted outcome: behave as a healthy provider would."""


OK = Ok()


@dataclass(frozen=True)
class Landed:
    """Scripted outcome: the request took effect, but the client got `error`.

    This is what a read timeout after the provider committed looks like.
    """

    error: InvoiceError = field(default_factory=lambda: OutcomeUnknown("read timeout"))


@dataclass(frozen=True)
class LandsLater:
    """Scripted outcome of a create: the client gets `error` now, and the
    provider processes the request `after_s` later by the provider's clock (a
    queued or slow provider: the request landed after the client gave up).

    A held-back request lands when the next call reaches the server at or
    after its time, or when the test calls `FakeProvider.land_late()`.
    """

    after_s: float = 0.0
    error: InvoiceError = field(default_factory=lambda: OutcomeUnknown("read timeout"))


Outcome = Ok | Landed | LandsLater | InvoiceError
"""One provider call's scripted fate: normal, landed-but-failed, landed later, or
failed (not landed)."""


@dataclass
class _Late:
    due_ms: int
    land: Callable[[], object]


class FakeProvider:
    """An `InvoiceProvider` whose server state lives in memory.

    Each call takes the next scripted outcome of its kind (`script`), else of
    any kind (`script_any`), else behaves normally. Created invoices are kept
    per number (duplicates included, unless `refuse_duplicates`), voided
    ones too (marked `voided`), so a test can count how many a provider
    really holds. A Stax fake honours `send_now`; a Maast fake always drafts.

    Args:
        provider: which provider this fake stands for.
        refuse_duplicates: answer a create for a held number with
            `InvoiceConflict` (Maast can be set to), instead of creating another.
    """

    def __init__(
        self, provider: Provider = Provider.MAAST, *, refuse_duplicates: bool = False
    ) -> None:
        self.provider = provider
        self.refuse_duplicates = refuse_duplicates
        self.clock: Callable[[], int] = lambda: 0
        """The server's time in ms (`Fakes` makes it the fake ledger's clock)."""
        self.journal = Journal()
        self.calls: list[tuple[str, str]] = []
        """(kind, invoice number) of every call, `validate` included."""
        self.held: dict[str, list[InvoiceReceipt]] = {}
        """What the provider's server holds, per invoice number."""
        self.sends: dict[str, int] = {}
        """How many send requests took effect, per invoice number."""
        self.invalid: InvoiceInvalid | None = None
        """Raised by `validate` when set."""
        self.send_now: list[bool] = []
        """The `send_now` of every create call, in order."""
        self.paid: set[str] = set()
        """Provider ids that are paid: `void` refuses them with `CannotVoid`."""
        self._scripts: dict[str, deque[Outcome]] = {}
        self._late: list[_Late] = []
        self._next_id = 0

    # -- scripting and inspection -------------------------------------------------

    def script(self, kind: CallKind, *outcomes: Outcome) -> FakeProvider:
        """Queue the outcomes of the next calls of `kind` (returns self)."""
        self._scripts.setdefault(kind, deque()).extend(outcomes)
        return self

    def script_any(self, outcomes: Iterable[Outcome]) -> FakeProvider:
        """Queue outcomes for the next calls of any kind, after kind-specific ones."""
        self._scripts.setdefault("*", deque()).extend(outcomes)
        return self

    def hold(self, receipt: InvoiceReceipt) -> None:
        """Put an invoice on the provider's side, as if created earlier."""
        self.held.setdefault(receipt.invoice_number, []).append(receipt)

    def count(self, number: str) -> int:
        """How many invoices the provider holds under `number`."""
        return len(self.held.get(number, []))

    def live(self, number: str) -> int:
        """How many of them are not voided."""
        return sum(1 for r in self.held.get(number, []) if not r.voided)

    def calls_of(self, kind: str) -> int:
        """How many calls of `kind` were made."""
        return sum(1 for k, _ in self.calls if k == kind)

    def sent_copies(self, number: str) -> int:
        """How many copies under `number` reached the customer."""
        return sum(1 for r in self.held.get(number, []) if r.sent)

    def land_late(self) -> None:
        """Process every request still held back (`LandsLater`) now."""
        late, self._late = self._late, []
        for request in late:
            with contextlib.suppress(InvoiceConflict):  # refused late: nothing held
                request.land()

    # -- the InvoiceProvider protocol ----------------------------------------------

    def validate(self, invoice: Invoice) -> None:
        """Raise `invalid` when set; record the call."""
        self._log("validate", invoice.number)
        if self.invalid is not None:
            raise self.invalid

    def prepare_create(self, invoice: Invoice) -> PreparedRequest:
        """A fake request (the key redacted, as real providers do)."""
        return PreparedRequest("POST", "https://provider.test/invoice", {"Authorization": "***"})

    async def create(self, invoice: Invoice, *, send_now: bool = False) -> InvoiceReceipt:
        """Create (or fail as scripted); duplicates are created unless refused."""
        self.send_now.append(send_now)
        outcome = self._next("create", invoice.number)
        if isinstance(outcome, InvoiceError):
            raise outcome
        if isinstance(outcome, LandsLater):
            due_ms = self.clock() + int(outcome.after_s * 1000)
            self._late.append(_Late(due_ms, lambda: self._store(invoice, send_now)))
            raise outcome.error
        receipt = self._store(invoice, send_now)
        if isinstance(outcome, Landed):
            raise outcome.error
        return receipt

    async def find_all(self, invoice: Invoice) -> list[InvoiceReceipt]:
        """Every copy held under the number, voided ones too, oldest first."""
        self._lookup("find_all", invoice.number)
        return list(self.held.get(invoice.number, []))

    async def find(self, invoice: Invoice) -> InvoiceReceipt | None:
        """The live copy a lookup adopts (`keeper_of`), or `None` (or fail as scripted)."""
        self._lookup("find", invoice.number)
        return keeper_of(self.held.get(invoice.number, []))

    async def send(self, receipt: InvoiceReceipt, invoice: Invoice) -> InvoiceReceipt:
        """Mark the held invoice sent (or fail as scripted)."""
        outcome = self._next("send", invoice.number)
        if isinstance(outcome, InvoiceError):
            raise outcome
        sent = receipt.model_copy(update={"sent": True, "status": "SENT"})
        self._replace(sent)
        self.sends[invoice.number] = self.sends.get(invoice.number, 0) + 1
        if isinstance(outcome, Landed):
            raise outcome.error
        return sent

    async def void(self, receipt: InvoiceReceipt) -> InvoiceReceipt:
        """Void the held copy (or fail as scripted); a paid one raises `CannotVoid`."""
        outcome = self._next("void", receipt.invoice_number)
        if isinstance(outcome, InvoiceError):
            raise outcome
        if receipt.provider_id in self.paid:
            raise CannotVoid(f"{receipt.provider_id} is paid", invoice_status="PAID")
        status = "CANCELED" if self.provider is Provider.MAAST else "DELETED"
        voided = receipt.model_copy(update={"voided": True, "status": status})
        self._replace(voided)
        if isinstance(outcome, Landed):
            raise outcome.error
        return voided

    async def aclose(self) -> None:
        """Nothing to close."""

    # -- internals ---------------------------------------------------------------

    def _log(self, kind: str, number: str) -> None:
        self.calls.append((kind, number))
        self.journal.append(f"provider.{kind}")

    def _lookup(self, kind: CallKind, number: str) -> None:
        outcome = self._next(kind, number)
        if isinstance(outcome, Landed):
            raise outcome.error  # a lookup changes nothing: landing is moot
        if isinstance(outcome, InvoiceError):
            raise outcome

    def _replace(self, receipt: InvoiceReceipt) -> None:
        held = self.held.get(receipt.invoice_number, [])
        self.held[receipt.invoice_number] = [
            receipt if r.provider_id == receipt.provider_id else r for r in held
        ]

    def _store(self, invoice: Invoice, send_now: bool) -> InvoiceReceipt:
        """What the server does with a create request."""
        if self.refuse_duplicates and self.count(invoice.number):
            raise InvoiceConflict(f"invoice {invoice.number} already exists", status=409)
        receipt = self._new_receipt(invoice)
        if send_now and self.provider is Provider.STAX:
            receipt = receipt.model_copy(update={"sent": True, "status": "SENT"})
            self.sends[invoice.number] = self.sends.get(invoice.number, 0) + 1
        self.hold(receipt)
        return receipt

    def _tick(self) -> None:
        """One more call reached the server: requests held back land when due."""
        now_ms = self.clock()
        due = [late for late in self._late if late.due_ms <= now_ms]
        self._late = [late for late in self._late if late.due_ms > now_ms]
        for late in due:
            with contextlib.suppress(InvoiceConflict):  # refused late: nothing held
                late.land()

    def _next(self, kind: CallKind, number: str) -> Outcome:
        self._log(kind, number)
        self._tick()
        for queue in (self._scripts.get(kind), self._scripts.get("*")):
            if queue:
                return queue.popleft()
        return OK

    def _new_receipt(self, invoice: Invoice) -> InvoiceReceipt:
        self._next_id += 1
        return InvoiceReceipt(
            provider=self.provider,
            provider_id=f"{self.provider.value}-{self._next_id}",
            invoice_number=invoice.number,
            status="SAVED",
            total=invoice.totals().total,
        )


LedgerState = Literal["queued", "sending", "created", "sent", "in_doubt"]

LEASE_MS = 10_000
WINDOW_MS = 300_000
"""The fake ledger's lease and landing window (the defaults of the real one)."""


class FakeLedger:
    """A `LedgerEntry` in memory, with the real ledger's transitions.

    A transition the real ledger refuses raises `AssertionError` (a bug in the
    caller). `after_failure` and `claim` play the runner's and the next
    claim's part, so a test can replay the retry loop without Redis. The
    ledger's clock (`now_ms`) moves only when a test moves it (`advance`,
    `pass_windows`): landing windows and verifications are decided by it.
    """

    def __init__(self, journal: Journal | None = None) -> None:
        self.journal = journal if journal is not None else Journal()
        self.state: LedgerState = "queued"
        self.receipt: InvoiceReceipt | None = None
        self.send_started = False
        self.lookup = False
        """Look up before creating (a queued record whose earlier create may exist)."""
        self.now_ms = 1_000_000
        self.landing_until_ms = 0
        self.unverified = False
        self.verify_after_ms = 0
        self.voided_ids: set[str] = set()
        self.verify_tries = 0
        self.verifications: list[Verification] = []
        """Every `mark_verified`, in order."""
        self.lease_checks = 0
        """How many times `ensure_lease` was called."""
        self.refuse_lease_checks: set[int] = set()
        """Which `ensure_lease` calls (1 the first) find the lease too close to its end."""
        self.transitions: list[str] = []
        """Method names, in call order (`mark_sending`, `mark_created`, ...)."""

    def preset(
        self,
        state: LedgerState,
        receipt: InvoiceReceipt | None = None,
        *,
        send_started: bool = False,
        landing_in_s: float | None = None,
        unverified: bool = False,
    ) -> Claim:
        """Put the record where an earlier job left it; returns the next claim.

        Args:
            landing_in_s: an earlier create may land for this long (default:
                a whole landing window for `sending` and `in_doubt`, none otherwise).
            unverified: created after an unknown outcome; verification is due
                when the landing window ends.
        """
        self.state, self.receipt, self.send_started = state, receipt, send_started
        if landing_in_s is None and state in ("sending", "in_doubt"):
            landing_in_s = (LEASE_MS + WINDOW_MS) / 1000
        if landing_in_s is not None:
            self.landing_until_ms = self.now_ms + int(landing_in_s * 1000)
        self.unverified = unverified
        self.verify_after_ms = self.landing_until_ms if unverified else 0
        return self.claim()

    def advance(self, seconds: float) -> None:
        """Move the ledger's clock on."""
        self.now_ms += int(seconds * 1000)

    def pass_windows(self) -> None:
        """Move the clock past the landing window and any verification time."""
        self.now_ms = max(self.now_ms, self.landing_until_ms, self.verify_after_ms)

    async def ensure_lease(self) -> None:
        """Grant, unless `refuse_lease_checks` says the lease is too close to its end."""
        self.journal.append("ledger.ensure_lease")
        self.lease_checks += 1
        if self.lease_checks in self.refuse_lease_checks:
            raise NotYet(0.0, "lease too close to its end to start a request")

    async def mark_sending(self) -> None:
        """`queued|in_doubt -> sending`; the landing window starts (or moves on)."""
        if self.state == "in_doubt":
            self.lookup = True
        self._move("mark_sending", ("queued", "in_doubt"), "sending")
        self.landing_until_ms = max(self.landing_until_ms, self.now_ms + LEASE_MS + WINDOW_MS)

    async def mark_created(self, receipt: InvoiceReceipt, *, verified: bool = True) -> float:
        """`sending|in_doubt|queued -> created` (or `sent`); unverified unless `verified`."""
        self._move("mark_created", ("sending", "in_doubt", "queued"), _created(receipt))
        self.receipt, self.lookup = receipt, False
        if verified:
            return 0.0
        self.unverified, self.verify_after_ms = True, self.landing_until_ms
        return max(0, self.verify_after_ms - self.now_ms) / 1000

    async def mark_verified(self, verification: Verification) -> None:
        """An unverified record's copies resolved: keep the keeper."""
        assert self.unverified, "mark_verified of a verified record"
        self._move("mark_verified", ("created", "sent"), self.state)
        self.verifications.append(verification)
        self.receipt = verification.keeper
        self.unverified, self.verify_after_ms, self.verify_tries = False, 0, 0
        dupes = (*verification.voided, *verification.found_voided)
        self.voided_ids |= {d.provider_id for d in dupes}
        if verification.keeper.sent:
            self.state = "sent"

    async def mark_verify_later(self, why: str) -> int:
        """Postpone a verification; tries so far."""
        assert self.unverified, "mark_verify_later of a verified record"
        self._move("mark_verify_later", ("created", "sent"), self.state)
        self.verify_tries += 1
        return self.verify_tries

    async def mark_send_started(self) -> None:
        """On a created record: a send is about to leave."""
        self._move("mark_send_started", ("created",), "created")
        self.send_started = True

    async def mark_sent(self, receipt: InvoiceReceipt) -> None:
        """`created|sent -> sent`."""
        self._move("mark_sent", ("created", "sent"), "sent")
        self.receipt = receipt

    def after_failure(self, error: InvoiceError | NotYet) -> None:
        """What the runner makes of a job that ended without a receipt:
        `OutcomeUnknown` leaves a `sending` record in doubt, anything else
        (a wait included) sends it back to the queue."""
        if self.state == "sending":
            self.state = "in_doubt" if isinstance(error, OutcomeUnknown) else "queued"

    def claim(self) -> Claim:
        """The `Claim` the real ledger would give the next job run."""
        if self.state == "sending":  # the holder died after its request left
            self.state = "in_doubt"
        return Claim(
            receipt=self.receipt if self.state in ("created", "sent") else None,
            create_maybe_landed=self.state == "in_doubt"
            or (self.state == "queued" and self.lookup),
            send_maybe_landed=self.state == "created" and self.send_started,
            now_ms=self.now_ms,
            landing_until_ms=self.landing_until_ms,
            unverified=self.unverified,
            verify_after_ms=self.verify_after_ms,
            voided_ids=frozenset(self.voided_ids),
            verify_tries=self.verify_tries,
        )

    def _move(self, name: str, allowed: tuple[LedgerState, ...], new: LedgerState) -> None:
        assert self.state in allowed, f"{name} from {self.state}"
        self.transitions.append(name)
        self.journal.append(f"ledger.{name}")
        self.state = new


def _created(receipt: InvoiceReceipt) -> LedgerState:
    return "sent" if receipt.sent else "created"


class ImmediateLimiter:
    """A `Limiter` that never waits; records every `acquire` and `record`.

    Args:
        refuse: errors (`RateLimited`) raised by the next `acquire` calls, in order.
    """

    def __init__(self, journal: Journal | None = None, *, refuse: Iterable[RateLimited] = ()):
        self.journal = journal if journal is not None else Journal()
        self.acquired = 0
        self.recorded: list[InvoiceError | None] = []
        self._refuse = deque(refuse)

    async def acquire(self) -> None:
        """Grant at once, unless a refusal is queued."""
        self.journal.append("limiter.acquire")
        if self._refuse:
            raise self._refuse.popleft()
        self.acquired += 1

    async def record(self, error: InvoiceError | None) -> None:
        """Keep `error` (None for a success)."""
        self.journal.append("limiter.record")
        self.recorded.append(error)


@dataclass
class Fakes:
    """A provider, ledger entry and limiter sharing one journal."""

    provider: FakeProvider = field(default_factory=FakeProvider)
    journal: Journal = field(init=False)
    ledger: FakeLedger = field(init=False)
    limiter: ImmediateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.journal = self.provider.journal
        self.ledger = FakeLedger(self.journal)
        self.limiter = ImmediateLimiter(self.journal)
        self.provider.clock = lambda: self.ledger.now_ms
