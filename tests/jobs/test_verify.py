"""Landing windows, verification and voiding in the create procedure, on the fakes.

Each test puts the fake ledger where an earlier run left it (in doubt, its
landing window running; or unverified), scripts what the provider holds and
how it answers, and checks what `create_invoice` asked of each port: when it
waits (`NotYet`), what it creates (a draft after an unknown outcome), which
copies it voids, what it sends, and what reaches the operator list.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from jobs.create_invoice import NOT_FOUND_WHY, UNVERIFIED_WHY, create_invoice
from jobs.errors import InvoiceRejected, NotYet, OutcomeUnknown, ProviderUnavailable
from jobs.models import Customer, Invoice, InvoiceReceipt, LineItem, Provider
from jobs.ports import Claim, Duplicate
from jobs.verify import LISTING_RETRY_S, LISTING_TRIES, SENT_WHY, plan
from tests.fakes import LEASE_MS, WINDOW_MS, FakeProvider, Fakes, Landed, LandsLater

WINDOW_S = (LEASE_MS + WINDOW_MS) / 1000
"""How long after a `sending` mark a create of ours may land (lease + window)."""


def make_invoice(number: str = "INV-1", *, send: bool = False) -> Invoice:
    return Invoice(
        number=number,
        customer=Customer(id="cust1"),
        lines=[LineItem(description="Widget", quantity=Decimal(1), unit_price=Decimal("10.00"))],
        send=send,
    )


def copy(
    provider_id: str, *, sent: bool = False, voided: bool = False, number: str = "INV-1"
) -> InvoiceReceipt:
    """One copy at the provider (a Stax one: its statuses)."""
    status = "DELETED" if voided else "SENT" if sent else "DRAFT"
    return InvoiceReceipt(
        provider=Provider.STAX,
        provider_id=provider_id,
        invoice_number=number,
        status=status,
        total=Decimal("10.00"),
        sent=sent,
        voided=voided,
    )


def stax() -> Fakes:
    return Fakes(FakeProvider(Provider.STAX))


async def run(f: Fakes, invoice: Invoice, claim: Claim | None = None) -> InvoiceReceipt:
    return await create_invoice(
        invoice,
        f.ledger.claim() if claim is None else claim,
        provider=f.provider,
        ledger=f.ledger,
        limiter=f.limiter,
    )


async def waits(f: Fakes, invoice: Invoice) -> NotYet:
    """Run, expecting a wait; the ledger then does what the runner makes it do."""
    with pytest.raises(NotYet) as caught:
        await run(f, invoice)
    f.ledger.after_failure(caught.value)
    return caught.value


def calls(f: Fakes) -> list[str]:
    return [kind for kind, _ in f.provider.calls if kind != "validate"]


# -- the landing window -------------------------------------------------------------


async def test_in_doubt_and_found_at_once_is_adopted_then_verified_after_its_window() -> None:
    # Given a create whose answer was lost, and which landed
    f = stax()
    invoice = make_invoice(send=True)
    f.ledger.preset("in_doubt")
    f.provider.hold(copy("c1"))
    # When the job runs again at once: it adopts the copy, but unverified
    wait = await waits(f, invoice)
    assert calls(f) == ["find_all"] and wait.why == UNVERIFIED_WHY
    assert wait.retry_after_s == pytest.approx(WINDOW_S)
    assert f.ledger.state == "created" and f.ledger.unverified
    # and it is not sent before it is verified
    assert f.provider.sends == {}
    # Then once the window passed: one copy listed, verified, and only then sent
    f.ledger.pass_windows()
    receipt = await run(f, invoice)
    assert calls(f) == ["find_all", "find_all", "send"]
    assert receipt.sent and f.ledger.transitions[-1] == "mark_sent" and not f.ledger.unverified
    assert f.ledger.verifications[0].voided == () and f.ledger.verifications[0].open == ()


async def test_in_doubt_and_not_found_waits_out_the_window_then_looks_again() -> None:
    f = stax()
    invoice = make_invoice(send=True)
    f.ledger.preset("in_doubt")
    f.ledger.advance(100)
    # not found while the earlier create may still land: no create, a wait
    wait = await waits(f, invoice)
    assert wait.why == NOT_FOUND_WHY and wait.retry_after_s == pytest.approx(WINDOW_S - 100)
    assert calls(f) == ["find_all"] and f.ledger.transitions == []
    # it landed meanwhile (inside its window): the lookup made once the window
    # passed finds it; that view also verifies it, so it is sent at once
    f.provider.hold(copy("late-1"))
    f.ledger.advance(wait.retry_after_s)
    receipt = await run(f, invoice)
    assert calls(f) == ["find_all", "find_all", "send"]
    assert f.provider.calls_of("create") == 0 and receipt.provider_id == "late-1"
    assert receipt.sent and not f.ledger.unverified


async def test_not_found_after_the_window_is_created_as_a_draft_then_verified_then_sent() -> None:
    # Given a Stax invoice in doubt, nothing found once its window passed
    f = stax()
    invoice = make_invoice(send=True)
    f.ledger.preset("in_doubt")
    f.ledger.pass_windows()
    # When it is created again: as a draft (no send_now), and unverified
    wait = await waits(f, invoice)
    assert calls(f) == ["find_all", "create"] and f.provider.send_now == [False]
    assert wait.why == UNVERIFIED_WHY and wait.retry_after_s == pytest.approx(WINDOW_S)
    assert f.provider.sent_copies("INV-1") == 0
    # Then after its own window: verified, and sent as a second step
    f.ledger.pass_windows()
    receipt = await run(f, invoice)
    assert calls(f) == ["find_all", "create", "find_all", "send"]
    assert receipt.sent and f.provider.sent_copies("INV-1") == 1


async def test_a_clean_first_attempt_sends_on_create_and_needs_no_verification() -> None:
    f = stax()
    receipt = await run(f, make_invoice(send=True))
    assert calls(f) == ["create"] and f.provider.send_now == [True]
    assert receipt.sent and not f.ledger.unverified and f.ledger.state == "sent"


async def test_a_lookup_of_a_number_nothing_of_ours_was_sent_for_creates_at_once() -> None:
    # `invoicer send` asks for a lookup of numbers the ledger did not know:
    # no request of ours can still land, so nothing to wait for or verify
    f = stax()
    receipt = await run(f, make_invoice(send=True), Claim(create_maybe_landed=True))
    assert calls(f) == ["find_all", "create"] and f.provider.send_now == [True]
    assert receipt.sent and not f.ledger.unverified


async def test_twins_found_by_such_a_lookup_are_resolved_at_once() -> None:
    f = stax()
    f.provider.hold(copy("old-1"))
    f.provider.hold(copy("old-2"))
    receipt = await run(f, make_invoice(), Claim(create_maybe_landed=True))
    assert calls(f) == ["find_all", "void"]  # the lookup is the verification's view
    assert receipt.provider_id == "old-1" and f.provider.live("INV-1") == 1
    assert [d.provider_id for d in f.ledger.verifications[0].voided] == ["old-2"]


# -- verification: the keeper rule ------------------------------------------------


def unverified(f: Fakes, ours: InvoiceReceipt) -> None:
    """The ledger holds `ours`, unverified, its window passed."""
    f.ledger.preset("created", ours, landing_in_s=WINDOW_S, unverified=True)
    f.ledger.pass_windows()


@pytest.mark.parametrize("late", [0, 1, 2], ids=["alone", "one_twin", "two_twins"])
async def test_unsent_twins_are_voided_and_the_ledgers_copy_kept(late: int) -> None:
    f = stax()
    ours = copy("ours")
    f.provider.hold(ours)
    for i in range(late):
        f.provider.hold(copy(f"late-{i}"))
    unverified(f, ours)
    receipt = await run(f, make_invoice())
    assert receipt.provider_id == "ours" and f.provider.live("INV-1") == 1
    assert calls(f) == ["find_all"] + ["void"] * late
    v = f.ledger.verifications[0]
    assert [d.provider_id for d in v.voided] == [f"late-{i}" for i in range(late)]
    assert v.open == () and v.why == ""


async def test_a_late_copy_the_customer_got_wins_over_the_ledgers_draft() -> None:
    # Given a first Stax attempt with send_now that landed late (sent), and
    # our draft created after the window
    f = stax()
    ours = copy("ours")
    f.provider.hold(copy("late-sent", sent=True))
    f.provider.hold(ours)
    unverified(f, ours)
    receipt = await run(f, make_invoice(send=True))
    # Then the sent copy is kept, ours voided, and nothing is sent again
    assert receipt.provider_id == "late-sent" and receipt.sent
    assert calls(f) == ["find_all", "void"]
    assert f.ledger.state == "sent" and f.ledger.receipt == receipt
    assert f.provider.sent_copies("INV-1") == 1 and f.provider.live("INV-1") == 1


async def test_a_second_sent_copy_goes_to_the_operator_list() -> None:
    f = stax()
    ours = copy("ours", sent=True)
    f.provider.hold(copy("other-sent", sent=True))
    f.provider.hold(ours)
    f.provider.hold(copy("late-draft"))
    unverified(f, ours)
    receipt = await run(f, make_invoice(send=True))
    assert receipt.provider_id == "ours"  # the ledger's copy, sent, is kept
    v = f.ledger.verifications[0]
    assert [d.provider_id for d in v.voided] == ["late-draft"]
    assert v.open == (Duplicate("other-sent", "SENT", sent=True, why=SENT_WHY),)


async def test_a_paid_twin_cannot_be_voided_and_is_listed_for_an_operator() -> None:
    f = stax()
    ours = copy("ours")
    f.provider.hold(ours)
    f.provider.hold(copy("late"))
    f.provider.paid.add("late")
    unverified(f, ours)
    await run(f, make_invoice())
    v = f.ledger.verifications[0]
    assert v.voided == () and [d.provider_id for d in v.open] == ["late"]
    assert "PAID" in v.open[0].why


async def test_a_void_the_provider_refuses_is_listed_not_dead_lettered() -> None:
    f = stax()
    ours = copy("ours")
    f.provider.hold(ours)
    f.provider.hold(copy("late"))
    f.provider.script("void", InvoiceRejected("locked", status=422))
    unverified(f, ours)
    await run(f, make_invoice())
    v = f.ledger.verifications[0]
    assert [d.provider_id for d in v.open] == ["late"] and "locked" in v.open[0].why


@pytest.mark.parametrize(
    "failure", [ProviderUnavailable("503", status=503), Landed()], ids=["unsent", "landed"]
)
async def test_a_void_that_fails_transiently_is_tried_again_and_counted_once(
    failure: ProviderUnavailable | Landed,
) -> None:
    # Given a twin whose void fails (and, in one case, took effect anyway)
    f = stax()
    ours = copy("ours")
    f.provider.hold(ours)
    f.provider.hold(copy("late"))
    f.provider.script("void", failure)
    unverified(f, ours)
    with pytest.raises((ProviderUnavailable, OutcomeUnknown)):
        await run(f, make_invoice())
    # nothing is recorded on a view half acted on: verification runs again
    assert f.ledger.unverified and f.ledger.verifications == []
    receipt = await run(f, make_invoice())
    v = f.ledger.verifications[0]
    assert receipt.provider_id == "ours" and f.provider.live("INV-1") == 1
    # counted exactly once: voided now, or found voided by the first try
    assert [d.provider_id for d in (*v.voided, *v.found_voided)] == ["late"]


async def test_our_copy_voided_by_an_interrupted_verification_leaves_the_sent_twin_kept() -> None:
    # Given a verification that chose a sent twin and voided our draft, but
    # never heard back (the void took effect)
    f = stax()
    ours = copy("ours")
    f.provider.hold(copy("late-sent", sent=True))
    f.provider.hold(ours)
    f.provider.script("void", Landed())
    unverified(f, ours)
    with pytest.raises(OutcomeUnknown):
        await run(f, make_invoice(send=True))
    # When verification runs again: ours is listed voided, the twin live
    receipt = await run(f, make_invoice(send=True))
    # Then the twin is kept (the customer has it), ours counted voided once, nothing sent
    assert receipt.provider_id == "late-sent" and f.ledger.state == "sent"
    v = f.ledger.verifications[0]
    assert v.voided == () and [d.provider_id for d in v.found_voided] == ["ours"]
    assert f.provider.calls_of("send") == 0 and f.provider.sent_copies("INV-1") == 1


async def test_a_twin_voided_by_an_earlier_verification_is_not_counted_again() -> None:
    f = stax()
    ours = copy("ours")
    f.provider.hold(copy("gone", voided=True))
    f.provider.hold(ours)
    unverified(f, ours)
    f.ledger.voided_ids.add("gone")
    await run(f, make_invoice())
    v = f.ledger.verifications[0]
    assert v.voided == () and v.found_voided == ()


async def test_a_listing_without_the_ledgers_copy_voids_nothing_and_looks_again() -> None:
    # Given a listing that lags: our copy is not in it, a twin is
    f = stax()
    ours = copy("ours")
    f.provider.hold(copy("late"))
    unverified(f, ours)
    for tries in range(1, LISTING_TRIES):
        wait = await waits(f, make_invoice())
        assert wait.retry_after_s == LISTING_RETRY_S and f.ledger.verify_tries == tries
        assert f.provider.calls_of("void") == 0
    # Then after a few views it goes to the operator list, still voiding nothing
    receipt = await run(f, make_invoice())
    v = f.ledger.verifications[0]
    assert receipt == ours and f.provider.calls_of("void") == 0
    assert [d.provider_id for d in v.open] == ["late"] and "not among the live copies" in v.why


async def test_an_unverified_invoice_waits_for_its_window_before_anything() -> None:
    f = stax()
    ours = copy("ours")
    f.provider.hold(ours)
    f.ledger.preset("created", ours, landing_in_s=WINDOW_S, unverified=True)
    f.ledger.advance(10)
    wait = await waits(f, make_invoice(send=True))
    assert wait.retry_after_s == pytest.approx(WINDOW_S - 10) and calls(f) == []


# -- the lease margin ------------------------------------------------------------------


async def test_a_lease_too_close_to_its_end_starts_no_create() -> None:
    f = stax()
    f.ledger.refuse_lease_checks = {1}
    with pytest.raises(NotYet) as caught:
        await run(f, make_invoice())
    assert "lease" in caught.value.why and calls(f) == []
    assert f.ledger.transitions == ["mark_sending"]  # the runner puts it back (`wait`)


async def test_a_lease_too_close_to_its_end_starts_no_void() -> None:
    f = stax()
    ours = copy("ours")
    f.provider.hold(ours)
    f.provider.hold(copy("late"))
    unverified(f, ours)
    f.ledger.refuse_lease_checks = {2}  # the lookup goes out, the void would not
    with pytest.raises(NotYet):
        await run(f, make_invoice())
    assert calls(f) == ["find_all"] and f.ledger.verifications == []
    assert f.provider.live("INV-1") == 2 and f.ledger.unverified


# -- late landings, end to end in memory ------------------------------------------------


async def test_a_create_that_lands_after_its_window_is_caught_and_voided() -> None:
    # Given a first create the provider processes long after we gave up
    f = stax()
    invoice = make_invoice(send=True)
    f.provider.script("create", LandsLater(after_s=WINDOW_S + 5))
    with pytest.raises(OutcomeUnknown):
        await run(f, invoice)
    f.ledger.after_failure(OutcomeUnknown("read timeout"))
    # When the job waits out the window, finds nothing, creates a draft, and
    # the late one lands meanwhile
    wait = await waits(f, invoice)
    f.ledger.advance(wait.retry_after_s)
    await waits(f, invoice)
    f.ledger.pass_windows()
    receipt = await run(f, invoice)
    # Then the late twin (sent on create: it was a clean first attempt) is
    # kept, our draft voided, and the customer got exactly one invoice
    assert f.provider.count("INV-1") == 2 and f.provider.live("INV-1") == 1
    assert f.provider.sent_copies("INV-1") == 1 and receipt.sent
    assert f.provider.send_now == [True, False]


def test_plan_keeps_the_ledgers_copy_among_unsent_ones() -> None:
    ours = copy("b")
    decided = plan(ours, [copy("a"), ours, copy("c", voided=True)], frozenset())
    assert decided.keeper == ours
    assert [c.provider_id for c in decided.to_void] == ["a"]
    assert [d.provider_id for d in decided.found_voided] == ["c"]
    assert plan(ours, [copy("a")], frozenset()).keeper is None
