"""The interfaces the domain needs from the outside world.

`jobs/create_invoice.py` is written against these Protocols only: the worker
implements `LedgerEntry` and `Limiter` on Redis, `jobs/providers` implement
`InvoiceProvider` over HTTP, and tests use in-memory fakes of all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from jobs.errors import InvoiceError
from jobs.models import Invoice, InvoiceReceipt, Provider


@dataclass(frozen=True)
class PreparedRequest:
    """An HTTP request a provider would send, for `--dry-run` and tests."""

    method: str
    url: str
    headers: dict[str, str]
    json: dict[str, Any] = field(default_factory=dict)


class InvoiceProvider(Protocol):
    """One provider account, spoken to over HTTP."""

    provider: Provider

    def validate(self, invoice: Invoice) -> None:
        """Refuse locally what the provider is known to reject.

        Raises:
            InvoiceInvalid: with one `FieldError` per problem.
        """

    def prepare_create(self, invoice: Invoice) -> PreparedRequest:
        """The exact create request, with the API key redacted."""

    async def create(self, invoice: Invoice, *, send_now: bool) -> InvoiceReceipt:
        """Create the invoice: a draft, or sent at once when `send_now` and the
        provider can send on create (Stax `send_now`; Maast always drafts).

        The caller decides `send_now`: only a first attempt whose outcome
        cannot be doubted may send on create (docs/providers.md). Does not
        validate: callers go through `jobs.create_invoice`, which calls
        `validate` once first.

        Raises:
            InvoiceError: translated from the provider's answer or the transport.
        """

    async def find_all(self, invoice: Invoice) -> list[InvoiceReceipt]:
        """Every copy the provider holds with our invoice number, oldest first,
        live and voided, each with its status and `sent` / `voided` flags.

        Raises:
            InvoiceError: when the provider cannot say, or could not list every
                copy (so the caller must not guess).
        """

    async def find(self, invoice: Invoice) -> InvoiceReceipt | None:
        """The live copy a lookup adopts (`jobs.models.keeper_of` over `find_all`),
        or `None` when the provider holds no live copy. Voided copies are never
        returned.

        Raises:
            InvoiceError: when the provider cannot say (so the caller must not guess).
        """

    async def send(self, receipt: InvoiceReceipt, invoice: Invoice) -> InvoiceReceipt:
        """Send a created draft to the customer; returns the updated receipt."""

    async def void(self, receipt: InvoiceReceipt) -> InvoiceReceipt:
        """Void one copy (Maast cancel -> CANCELED, Stax delete -> DELETED);
        returns it with `voided` set. A copy that is already voided counts as
        voided (no error).

        Raises:
            CannotVoid: the provider will not void it (it was paid).
            InvoiceError: any other failure, translated once.
        """

    async def aclose(self) -> None:
        """Close the shared HTTP client."""


class Limiter(Protocol):
    """Paces requests to one provider account, across every worker."""

    async def acquire(self) -> None:
        """Wait for a request slot.

        Raises:
            RateLimited: no slot within the bounded wait, or the provider is
                paused; `retry_after_s` says when to come back.
        """

    async def record(self, error: InvoiceError | None) -> None:
        """Report how a request ended: 429s pause, 4xx count toward the failure budget."""


@dataclass(frozen=True)
class Claim:
    """What the ledger knows about an invoice when a worker takes its job.

    Times are the ledger's (Redis server time, ms), compared with `now_ms`:
    one clock for every worker.
    """

    receipt: InvoiceReceipt | None = None
    """Set once the invoice was created: no create call may follow."""
    create_maybe_landed: bool = False
    """An earlier create may have reached the provider: look up before creating."""
    send_maybe_landed: bool = False
    """An earlier send may have reached the provider: look up before sending."""
    now_ms: int = 0
    """The ledger's time at the claim."""
    landing_until_ms: int = 0
    """Until when a create request of ours that may have left can still be
    processed (0: none ever left). A lookup that finds nothing before then
    proves nothing."""
    unverified: bool = False
    """Created or adopted after an unknown outcome: another copy may exist;
    it is looked for once `verify_after_ms` has passed, and never sent before."""
    verify_after_ms: int = 0
    voided_ids: frozenset[str] = frozenset()
    """Copies this invoice's verifications already voided (not counted twice)."""
    verify_tries: int = 0
    """Verifications postponed so far because the ledger's copy was not listed."""

    @property
    def outcome_was_unknown(self) -> bool:
        """A create request of ours may have landed unseen: what is created or
        adopted now is unverified, and created as a draft."""
        return self.create_maybe_landed and self.landing_until_ms > 0


@dataclass(frozen=True)
class Duplicate:
    """Another copy of an invoice at the provider, and what became of it."""

    provider_id: str
    status: str
    sent: bool = False
    why: str = ""
    """Why it was left open (sent, paid, a void the provider refused)."""


@dataclass(frozen=True)
class Verification:
    """What looking an unverified invoice up again decided, for the ledger."""

    keeper: InvoiceReceipt
    """The copy kept: the ledger's, or the sent copy the customer holds."""
    voided: tuple[Duplicate, ...] = ()
    """Copies voided by this verification."""
    found_voided: tuple[Duplicate, ...] = ()
    """Copies found voided already (an interrupted verification voided them)."""
    open: tuple[Duplicate, ...] = ()
    """Copies that could not be voided: they go to the operator list."""
    why: str = ""
    """Why the invoice goes to the operator list when no copy is open."""


class LedgerEntry(Protocol):
    """One invoice's ledger record, held by the worker running its job."""

    async def ensure_lease(self) -> None:
        """Called last before every provider request: the holder's lease must
        still be valid, with a margin, for the request to start.

        Raises:
            NotYet: the lease is too close to its end even after renewing it.
            Exception: the holder's own, when another holder took over.
        """

    async def mark_sending(self) -> None:
        """Record that a create request is about to leave (`queued -> sending`)."""

    async def mark_created(self, receipt: InvoiceReceipt, *, verified: bool = True) -> float:
        """Record the provider's receipt (`sending|in_doubt -> created`).

        Args:
            verified: False when the create outcome was once unknown: the
                invoice is then unverified until `mark_verified`.

        Returns:
            Seconds until an unverified invoice may be verified (0.0 if verified or due).
        """

    async def mark_verified(self, verification: Verification) -> None:
        """Store the keeper, the voided copies and the open ones (operator list)."""

    async def mark_verify_later(self, why: str) -> int:
        """Postpone a verification (its view could not be trusted); tries so far."""

    async def mark_send_started(self) -> None:
        """Record that a send request is about to leave."""

    async def mark_sent(self, receipt: InvoiceReceipt) -> None:
        """Record that the customer was sent the invoice (`created -> sent`)."""
