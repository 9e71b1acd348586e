"""The idempotent create procedure, on in-memory fakes: the exactly-once rules.

Each test scripts what the provider does with each request (`tests/fakes.py`)
and checks what `create_invoice` asked of the provider, the ledger and the
limiter, and in which order. The last test replays random retry histories and
checks that the provider ends up with exactly one invoice.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jobs.create_invoice import create_invoice
from jobs.errors import (
    ConfigurationError,
    FieldError,
    InvoiceConflict,
    InvoiceError,
    InvoiceInvalid,
    InvoiceRejected,
    NotYet,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
    TransientError,
)
from jobs.models import Customer, Invoice, InvoiceReceipt, LineItem, Provider
from jobs.ports import Claim
from tests.fakes import (
    LEASE_MS,
    OK,
    WINDOW_MS,
    FakeProvider,
    Fakes,
    ImmediateLimiter,
    Landed,
    LandsLater,
    Outcome,
)


def make_invoice(number: str = "INV-1", *, send: bool = False, price: str = "10.00") -> Invoice:
    """A small valid invoice (total = `price`)."""
    return Invoice(
        number=number,
        customer=Customer(id="cust1"),
        lines=[LineItem(description="Widget", quantity=Decimal(1), unit_price=Decimal(price))],
        send=send,
    )


def receipt_for(
    invoice: Invoice, *, sent: bool = False, total: Decimal | None = None
) -> InvoiceReceipt:
    """A receipt the provider might hold for `invoice`."""
    return InvoiceReceipt(
        provider=Provider.MAAST,
        provider_id="held-1",
        invoice_number=invoice.number,
        status="SENT" if sent else "SAVED",
        total=invoice.totals().total if total is None else total,
        sent=sent,
    )


async def run(f: Fakes, invoice: Invoice, claim: Claim | None = None) -> InvoiceReceipt:
    """`create_invoice` on the fakes, with the claim the fake ledger gives by default."""
    return await create_invoice(
        invoice,
        f.ledger.claim() if claim is None else claim,
        provider=f.provider,
        ledger=f.ledger,
        limiter=f.limiter,
    )


def provider_calls(f: Fakes) -> list[str]:
    return [kind for kind, _ in f.provider.calls if kind != "validate"]


# -- the plain path ----------------------------------------------------------------


async def test_fresh_invoice_is_created_once_in_order() -> None:
    # Given a fresh claim
    f = Fakes()
    invoice = make_invoice()
    # When the procedure runs
    receipt = await run(f, invoice)
    # Then one create, paced and recorded, between `sending` and `created`
    assert provider_calls(f) == ["create"]
    assert f.journal == [
        "provider.validate",
        "limiter.acquire",
        "ledger.mark_sending",
        "ledger.ensure_lease",
        "provider.create",
        "limiter.record",
        "ledger.mark_created",
    ]
    assert f.limiter.recorded == [None]
    assert f.ledger.receipt == receipt and f.ledger.state == "created"
    assert receipt.total == Decimal("10.00")
    assert f.provider.count("INV-1") == 1


async def test_a_claim_with_a_receipt_makes_no_provider_call() -> None:
    f = Fakes()
    invoice = make_invoice()
    held = receipt_for(invoice)
    receipt = await run(f, invoice, Claim(receipt=held, create_maybe_landed=True))
    assert receipt == held
    assert f.provider.calls == [] and f.journal == []
    assert f.limiter.acquired == 0 and f.ledger.transitions == []


async def test_a_sent_receipt_is_not_sent_again() -> None:
    f = Fakes()
    invoice = make_invoice(send=True)
    held = receipt_for(invoice, sent=True)
    assert await run(f, invoice, Claim(receipt=held, send_maybe_landed=True)) == held
    assert f.provider.calls == []


async def test_local_validation_failure_calls_no_provider() -> None:
    f = Fakes()
    f.provider.invalid = InvoiceInvalid("bad", field_errors=(FieldError("customer.id", "long"),))
    with pytest.raises(InvoiceInvalid) as caught:
        await run(f, make_invoice())
    assert caught.value.field_errors == (FieldError("customer.id", "long"),)
    assert provider_calls(f) == []
    assert f.limiter.acquired == 0 and f.ledger.transitions == []


# -- maybe landed: look before creating ----------------------------------------------


async def test_maybe_landed_and_found_adopts_without_create() -> None:
    # Given an earlier create that landed although its client saw an error
    f = Fakes()
    invoice = make_invoice()
    f.provider.hold(receipt_for(invoice))
    # When the job runs again with the claim the ledger gives (for a number
    # the ledger never sent a request for: nothing of ours can still land)
    receipt = await run(f, invoice, Claim(create_maybe_landed=True))
    # Then it listed the copies, adopted the one found, and never created
    assert provider_calls(f) == ["find_all"]
    assert f.journal[:3] == ["limiter.acquire", "ledger.ensure_lease", "provider.find_all"]
    assert f.ledger.transitions == ["mark_created"]
    assert receipt.provider_id == "held-1" and not f.ledger.unverified
    assert f.provider.count("INV-1") == 1


async def test_maybe_landed_and_not_found_creates_after_the_lookup() -> None:
    f = Fakes()
    receipt = await run(f, make_invoice(), Claim(create_maybe_landed=True))
    assert provider_calls(f) == ["find_all", "create"]
    assert f.limiter.acquired == 2 and f.limiter.recorded == [None, None]
    assert f.ledger.transitions == ["mark_sending", "mark_created"]
    assert f.provider.count("INV-1") == 1 and f.ledger.receipt == receipt


async def test_a_failed_lookup_never_falls_back_to_create() -> None:
    f = Fakes()
    f.provider.script("find_all", ProviderUnavailable("503", status=503))
    with pytest.raises(ProviderUnavailable):
        await run(f, make_invoice(), f.ledger.preset("in_doubt"))
    assert provider_calls(f) == ["find_all"]
    assert f.ledger.transitions == []


@pytest.mark.parametrize(
    "error",
    [
        OutcomeUnknown("read timeout"),
        ProviderUnavailable("503", status=503),
        InvoiceRejected("bad", status=422),
        ConfigurationError("401", status=401),
        RateLimited("429", retry_after_s=3, status=429),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_failed_create_is_recorded_and_propagates_unchanged(error: InvoiceError) -> None:
    f = Fakes()
    f.provider.script("create", error)
    with pytest.raises(type(error)) as caught:
        await run(f, make_invoice())
    assert caught.value is error
    assert provider_calls(f) == ["create"]  # never two creates in one call
    assert f.limiter.recorded == [error]
    assert f.ledger.transitions == ["mark_sending"]


async def test_a_refused_limiter_slot_sends_nothing() -> None:
    f = Fakes()
    f.limiter = ImmediateLimiter(f.journal, refuse=[RateLimited("paused", retry_after_s=5)])
    with pytest.raises(RateLimited):
        await run(f, make_invoice())
    assert provider_calls(f) == [] and f.ledger.transitions == []


# -- conflict: adopt our own invoice, refuse someone else's ----------------------------


async def test_conflict_with_our_own_invoice_is_adopted() -> None:
    f = Fakes(FakeProvider(refuse_duplicates=True))
    invoice = make_invoice()
    f.provider.hold(receipt_for(invoice))
    receipt = await run(f, invoice)
    assert provider_calls(f) == ["create", "find"]
    assert receipt.provider_id == "held-1"
    assert isinstance(f.limiter.recorded[0], InvoiceConflict) and f.limiter.recorded[1] is None
    assert f.ledger.transitions == ["mark_sending", "mark_created"]
    assert f.provider.count("INV-1") == 1


async def test_conflict_with_another_total_is_raised() -> None:
    f = Fakes(FakeProvider(refuse_duplicates=True))
    invoice = make_invoice()
    f.provider.hold(receipt_for(invoice, total=Decimal("99.99")))
    with pytest.raises(InvoiceConflict):
        await run(f, invoice)
    assert provider_calls(f) == ["create", "find"]
    assert f.ledger.transitions == ["mark_sending"]


async def test_conflict_when_lookup_finds_nothing_is_raised() -> None:
    f = Fakes()
    f.provider.script("create", InvoiceConflict("number in use", status=409))
    with pytest.raises(InvoiceConflict):
        await run(f, make_invoice())
    assert provider_calls(f) == ["create", "find"]


# -- sending -----------------------------------------------------------------------------


async def test_send_follows_create_only_when_asked() -> None:
    draft, to_send = Fakes(), Fakes()
    assert not (await run(draft, make_invoice())).sent
    sent = await run(to_send, make_invoice(send=True))
    assert provider_calls(draft) == ["create"]
    assert provider_calls(to_send) == ["create", "send"]
    assert sent.sent and to_send.ledger.state == "sent"
    assert to_send.ledger.transitions == [
        "mark_sending",
        "mark_created",
        "mark_send_started",
        "mark_sent",
    ]
    assert to_send.limiter.acquired == 2 and to_send.limiter.recorded == [None, None]


async def test_created_receipt_is_only_sent() -> None:
    f = Fakes()
    invoice = make_invoice(send=True)
    held = receipt_for(invoice)
    f.provider.hold(held)
    sent = await run(f, invoice, f.ledger.preset("created", held))
    assert provider_calls(f) == ["send"] and sent.sent
    assert f.journal.index("limiter.acquire") < f.journal.index("provider.send")


async def test_send_maybe_landed_and_found_sent_sends_nothing() -> None:
    f = Fakes()
    invoice = make_invoice(send=True)
    f.provider.hold(receipt_for(invoice, sent=True))
    claim = f.ledger.preset("created", receipt_for(invoice), send_started=True)
    assert claim.receipt == receipt_for(invoice) and claim.send_maybe_landed
    sent = await run(f, invoice, claim)
    assert provider_calls(f) == ["find"] and sent.sent
    assert f.ledger.transitions == ["mark_sent"]


async def test_send_maybe_landed_and_still_a_draft_is_sent() -> None:
    f = Fakes()
    invoice = make_invoice(send=True)
    held = receipt_for(invoice)
    f.provider.hold(held)
    sent = await run(f, invoice, f.ledger.preset("created", held, send_started=True))
    assert provider_calls(f) == ["find", "send"] and sent.sent
    assert f.provider.sends == {"INV-1": 1}


async def test_a_failed_send_is_recorded_and_keeps_the_receipt() -> None:
    f = Fakes()
    f.provider.script("send", Landed())
    with pytest.raises(OutcomeUnknown):
        await run(f, make_invoice(send=True))
    assert isinstance(f.limiter.recorded[-1], OutcomeUnknown)
    assert f.ledger.state == "created" and f.ledger.send_started
    assert f.ledger.claim().send_maybe_landed


# -- every provider call is paced and recorded --------------------------------------------


@pytest.mark.parametrize(
    ("claim", "send", "held"),
    [
        (Claim(), False, False),
        (Claim(), True, False),
        (Claim(create_maybe_landed=True), True, False),
        (Claim(create_maybe_landed=True), True, True),
    ],
)
async def test_every_provider_call_is_preceded_by_acquire_and_followed_by_record(
    claim: Claim, send: bool, held: bool
) -> None:
    f = Fakes()
    invoice = make_invoice(send=send)
    if held:
        f.provider.hold(receipt_for(invoice))
    await run(f, invoice, claim)
    calls = [e for e in f.journal if e.startswith(("provider.", "limiter.")) and "valid" not in e]
    assert calls, "the scenario made no provider call"
    # acquire, call, record: in triples, nothing in between
    triples = [calls[i : i + 3] for i in range(0, len(calls), 3)]
    for acquire, call, record in triples:
        assert (acquire, record) == ("limiter.acquire", "limiter.record"), calls
        assert call.startswith("provider."), calls
    assert len(f.limiter.recorded) == len(provider_calls(f))
    # and the lease check is the very last step before each request leaves
    for i, entry in enumerate(f.journal):
        if entry.startswith("provider.") and entry != "provider.validate":
            assert f.journal[i - 1] == "ledger.ensure_lease", f.journal


# -- exactly once, over random retry histories --------------------------------------------

OUTCOMES: dict[str, Outcome] = {
    "ok": OK,
    "landed": Landed(),
    "unknown": OutcomeUnknown("read timeout"),
    "unavailable": ProviderUnavailable("503", status=503),
    # processed after the client gave up: before the next call, after the
    # lookup made at once (inside the landing window), or even after the
    # landing window (the provider broke our assumption: verification must
    # catch the twin and void it)
    "late": LandsLater(after_s=0.0),
    "later": LandsLater(after_s=1.0),
    "too_late": LandsLater(after_s=(LEASE_MS + WINDOW_MS) / 1000 + 1),
}


async def retry_loop(f: Fakes, invoice: Invoice, max_runs: int) -> InvoiceReceipt | None:
    """The runner's loop, in memory: claim, run; on a wait, let the ledger's
    clock move on as arq would; on a transient error, try again."""
    for _ in range(max_runs):
        claim = f.ledger.claim()
        try:
            return await run(f, invoice, claim)
        except NotYet as wait:
            f.ledger.after_failure(wait)
            f.ledger.advance(wait.retry_after_s)
        except TransientError as error:
            f.ledger.after_failure(error)
        # never two copies to the customer, whatever happened so far
        assert f.provider.sent_copies(invoice.number) <= 1
    return None


@settings(max_examples=400, deadline=None)
# A void that took effect unanswered, of the ledger's own copy in favour of a
# sent twin: the next verification must keep the twin, never send ours.
@example(
    fates=["too_late", "late", "late", "ok", "late", "landed"], send=True, provider=Provider.STAX
)
@given(
    fates=st.lists(st.sampled_from(sorted(OUTCOMES)), max_size=12),
    send=st.booleans(),
    provider=st.sampled_from(Provider),
)
def test_any_retry_history_ends_with_one_live_copy_sent_at_most_once(
    fates: list[str], send: bool, provider: Provider
) -> None:
    # Given a provider that answers each request with the next drawn fate
    f = Fakes(FakeProvider(provider))
    f.provider.script_any(OUTCOMES[name] for name in fates)
    invoice = make_invoice(send=send)
    # When the job is retried until it succeeds (every failure here is
    # transient, and unscripted calls succeed, so it must end)
    receipt = asyncio.run(retry_loop(f, invoice, max_runs=4 * len(fates) + 6))
    # Then the provider holds exactly one live invoice, the ledger's, verified
    assert receipt is not None
    live = [r for r in f.provider.held[invoice.number] if not r.voided]
    assert [r.provider_id for r in live] == [receipt.provider_id]
    assert f.ledger.receipt == receipt and not f.ledger.unverified
    # every other copy was voided (a late landing undone), none of them sent
    voided = [r for r in f.provider.held[invoice.number] if r.voided]
    assert not any(r.sent for r in voided)
    # and the customer got it exactly once if asked, never otherwise
    if send:
        assert receipt.sent and f.provider.sent_copies(invoice.number) == 1
        assert f.provider.sends == {invoice.number: 1}
    else:
        assert f.provider.sends == {} and f.provider.sent_copies(invoice.number) == 0
