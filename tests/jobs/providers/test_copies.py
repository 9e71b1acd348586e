"""Every copy of a number (`find_all`), the keeper a lookup adopts (`find`),
voiding (`void`) and `send_now`, for both providers, through `httpx.MockTransport`.

A lookup must never adopt a voided copy: after verification voided a
duplicate, a later lookup adopting it would leave the customer with an
invoice that can no longer be paid.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx2 as httpx
import pytest

from jobs.errors import CannotVoid, InvoiceRejected, OutcomeUnknown
from jobs.models import InvoiceReceipt, Provider
from jobs.providers.maast import MaastProvider
from jobs.providers.stax import StaxProvider
from tests.jobs.providers.conftest import (
    Handler,
    Recorder,
    json_response,
    maast_invoice,
    stax_invoice,
)

MaastWith = Callable[[Handler], tuple[MaastProvider, Recorder]]
StaxWith = Callable[[Handler], tuple[StaxProvider, Recorder]]
STAX_URL = "https://app.staxpayments.com/#/bill/"


def maast_row(invoice_id: int, status: str = "SAVED", **extra: object) -> dict[str, object]:
    return {"invoice_id": invoice_id, "invoice_number": "INV-1", "status": status} | extra


def maast_ok(data: object) -> httpx.Response:
    return json_response(200, {"code": 0, "message": "Success", "data": data})


def maast_listing(*rows: dict[str, object]) -> httpx.Response:
    head = {"code": 0, "message": "Success", "totalRecords": len(rows), "totalPages": 1}
    return json_response(200, head | {"data": list(rows)})


def maast_refusal(message: str) -> httpx.Response:
    return json_response(400, {"code": 2, "message": message, "data": [{"field": "status"}]})


def stax_row(invoice_id: str, status: str = "DRAFT", **extra: object) -> dict[str, object]:
    return {
        "id": invoice_id,
        "status": status,
        "url": STAX_URL,
        "meta": {"reference": "INV-1"},
        "created_at": "2025-03-01 10:00:00",
        "deleted_at": "2025-03-02 10:00:00" if status == "DELETED" else None,
    } | extra


def stax_listing(*rows: dict[str, object]) -> httpx.Response:
    return json_response(200, {"current_page": 1, "last_page": 1, "data": list(rows)})


def maast_receipt(provider_id: str = "7", *, sent: bool = False) -> InvoiceReceipt:
    return InvoiceReceipt(
        provider=Provider.MAAST,
        provider_id=provider_id,
        invoice_number="INV-1",
        status="OUTSTANDING" if sent else "SAVED",
        sent=sent,
    )


def stax_receipt(provider_id: str = "s-1", *, sent: bool = False) -> InvoiceReceipt:
    return InvoiceReceipt(
        provider=Provider.STAX,
        provider_id=provider_id,
        invoice_number="INV-1",
        status="SENT" if sent else "DRAFT",
        link=f"{STAX_URL}{provider_id}",
        sent=sent,
    )


# --- find_all and find -----------------------------------------------------------------


async def test_maast_find_all_sees_every_copy_oldest_first(maast_with: MaastWith) -> None:
    rows = [
        maast_row(12),
        maast_row(9, "CANCELED"),
        maast_row(15, "CANCELED", date_sent="2025-03-01"),
        maast_row(10, "OUTSTANDING", date_sent="2025-03-01"),
    ]
    provider, _ = maast_with(lambda _: maast_listing(*rows))
    copies = await provider.find_all(maast_invoice())
    flags = [(c.provider_id, c.status, c.sent, c.voided) for c in copies]
    assert flags == [
        ("9", "CANCELED", False, True),
        ("10", "OUTSTANDING", True, False),
        ("12", "SAVED", False, False),
        ("15", "CANCELED", True, True),  # once sent, it was sent: the flag stays
    ]
    found = await provider.find(maast_invoice())
    assert found is not None and found.provider_id == "10"  # the live copy that was sent


async def test_maast_find_never_adopts_a_canceled_copy(maast_with: MaastWith) -> None:
    provider, _ = maast_with(lambda _: maast_listing(maast_row(3, "CANCELED"), maast_row(4)))
    found = await provider.find(maast_invoice())
    assert found is not None and found.provider_id == "4"
    only_voided, _ = maast_with(lambda _: maast_listing(maast_row(3, "CANCELED")))
    assert await only_voided.find(maast_invoice()) is None
    assert len(await only_voided.find_all(maast_invoice())) == 1


async def test_stax_find_all_sees_deleted_copies_oldest_first(stax_with: StaxWith) -> None:
    rows = [  # Stax lists newest first
        stax_row(
            "c", created_at="2025-03-03 00:00:00", sent_at="2025-03-03 00:00:00", status="SENT"
        ),
        stax_row("b", "DELETED", created_at="2025-03-02 00:00:00"),
        stax_row("a", created_at="2025-03-01 00:00:00"),
        stax_row("x", meta={"reference": "INV-10"}),
    ]
    provider, _ = stax_with(lambda _: stax_listing(*rows))
    copies = await provider.find_all(stax_invoice())
    flags = [(c.provider_id, c.status, c.sent, c.voided) for c in copies]
    assert flags == [
        ("a", "DRAFT", False, False),
        ("b", "DELETED", False, True),
        ("c", "SENT", True, False),
    ]
    found = await provider.find(stax_invoice())
    assert found is not None and found.provider_id == "c"  # sent beats older


async def test_stax_find_without_a_live_copy_is_none(stax_with: StaxWith) -> None:
    provider, _ = stax_with(lambda _: stax_listing(stax_row("b", "DELETED")))
    assert await provider.find(stax_invoice()) is None


async def test_find_all_is_inconclusive_rather_than_partial(stax_with: StaxWith) -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        return json_response(200, {"current_page": page, "last_page": 99, "data": [stax_row("a")]})

    provider, _ = stax_with(endless)
    with pytest.raises(OutcomeUnknown):
        await provider.find_all(stax_invoice())


# --- send_now ----------------------------------------------------------------------------


async def test_stax_sends_on_create_only_when_asked(stax_with: StaxWith) -> None:
    provider, server = stax_with(lambda _: json_response(200, stax_row("n")))
    await provider.create(stax_invoice(send=True), send_now=False)
    assert "send_now" not in server.body()  # type: ignore[operator]
    await provider.create(stax_invoice(), send_now=True)
    assert server.body()["send_now"] is True  # type: ignore[index]


async def test_maast_always_drafts(maast_with: MaastWith) -> None:
    provider, server = maast_with(lambda _: maast_ok(maast_row(1)))
    receipt = await provider.create(maast_invoice(send=True), send_now=True)
    assert "send_now" not in server.body() and not receipt.sent  # type: ignore[operator]


# --- void: Maast -------------------------------------------------------------------------


async def test_maast_void_cancels(maast_with: MaastWith) -> None:
    provider, server = maast_with(lambda _: maast_ok(maast_row(7, "CANCELED")))
    voided = await provider.void(maast_receipt())
    assert (voided.status, voided.voided, voided.sent) == ("CANCELED", True, False)
    assert [(r.method, r.url.path) for r in server.requests] == [
        ("DELETE", "/platform/invoice/7/cancel")
    ]


async def test_maast_void_keeps_sent(maast_with: MaastWith) -> None:
    provider, _ = maast_with(lambda _: maast_ok(None))  # an answer without data
    voided = await provider.void(maast_receipt(sent=True))
    assert (voided.status, voided.voided, voided.sent) == ("CANCELED", True, True)


async def test_maast_second_cancel_is_success(maast_with: MaastWith) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return maast_refusal("a CANCELED invoice cannot be canceled")
        return maast_ok(maast_row(7, "CANCELED"))

    provider, recorder = maast_with(server)
    voided = await provider.void(maast_receipt())
    assert voided.voided and voided.status == "CANCELED"
    assert [r.method for r in recorder.requests] == ["DELETE", "GET"]


async def test_maast_paid_cannot_be_voided(maast_with: MaastWith) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return maast_refusal("whatever Maast says")
        return maast_ok(maast_row(7, "PAID", date_sent="2025-03-01"))

    provider, _ = maast_with(server)
    with pytest.raises(CannotVoid) as caught:
        await provider.void(maast_receipt(sent=True))
    assert caught.value.invoice_status == "PAID" and caught.value.status == 400
    assert not isinstance(caught.value, InvoiceRejected)  # the caller can tell it apart


async def test_maast_other_refusals_stay_rejections(maast_with: MaastWith) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return maast_refusal("no")
        return maast_ok(maast_row(7, "SAVED"))

    provider, _ = maast_with(server)
    with pytest.raises(InvoiceRejected):
        await provider.void(maast_receipt())


async def test_maast_void_of_an_unknown_id_asks_nothing_more(maast_with: MaastWith) -> None:
    not_found = json_response(404, {"code": 7, "message": "Invoice 7 not found", "data": None})
    provider, recorder = maast_with(lambda _: not_found)
    with pytest.raises(InvoiceRejected):
        await provider.void(maast_receipt())
    assert len(recorder.requests) == 1


async def test_maast_void_after_a_500_is_unknown(maast_with: MaastWith) -> None:
    provider, _ = maast_with(lambda _: json_response(500, {"code": 99, "message": "x"}))
    with pytest.raises(OutcomeUnknown):
        await provider.void(maast_receipt())


# --- void: Stax --------------------------------------------------------------------------


async def test_stax_void_deletes(stax_with: StaxWith) -> None:
    provider, server = stax_with(lambda _: json_response(200, stax_row("s-1", "DELETED")))
    voided = await provider.void(stax_receipt())
    assert (voided.status, voided.voided) == ("DELETED", True)
    assert voided.link == f"{STAX_URL}s-1"
    assert [(r.method, r.url.path) for r in server.requests] == [("DELETE", "/invoice/s-1")]


async def test_stax_already_deleted_is_success_without_asking_again(stax_with: StaxWith) -> None:
    already = json_response(422, {"deleted_at": ["The invoice is already deleted."]})
    provider, server = stax_with(lambda _: already)
    voided = await provider.void(stax_receipt())
    assert (voided.status, voided.voided) == ("DELETED", True)
    assert len(server.requests) == 1


async def test_stax_unknown_id_is_rejected_without_asking_again(stax_with: StaxWith) -> None:
    unknown = json_response(422, {"id": ["The selected id is invalid."]})
    provider, server = stax_with(lambda _: unknown)
    with pytest.raises(InvoiceRejected):
        await provider.void(stax_receipt())
    assert len(server.requests) == 1  # each refusal counts toward Stax's block


@pytest.mark.parametrize("status", ["PAID", "PARTIALLY APPLIED"])
async def test_stax_paid_cannot_be_voided(stax_with: StaxWith, status: str) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return json_response(422, {"status": ["A paid invoice cannot be deleted."]})
        return json_response(200, stax_row("s-1", status, sent_at="2025-03-01 10:00:00"))

    provider, recorder = stax_with(server)
    with pytest.raises(CannotVoid) as caught:
        await provider.void(stax_receipt(sent=True))
    assert caught.value.invoice_status == status
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("DELETE", "/invoice/s-1"),
        ("GET", "/invoice/s-1"),
    ]


async def test_stax_other_refusals_stay_rejections(stax_with: StaxWith) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return json_response(422, {"status": ["nope"]})
        return json_response(200, stax_row("s-1", "SENT"))

    provider, _ = stax_with(server)
    with pytest.raises(InvoiceRejected):
        await provider.void(stax_receipt())


# --- receipts in the ledger ----------------------------------------------------------------


def test_a_receipt_stored_before_voided_existed_still_parses() -> None:
    stored = (
        '{"provider":"stax","provider_id":"s-1","invoice_number":"INV-1",'
        '"status":"SENT","link":null,"total":"22.1","sent":true}'
    )
    receipt = InvoiceReceipt.model_validate_json(stored)
    assert receipt.sent and not receipt.voided
    assert InvoiceReceipt.model_validate_json(receipt.model_dump_json()) == receipt


def test_a_live_receipt_is_written_as_before_voided_existed() -> None:
    live = InvoiceReceipt(provider=Provider.MAAST, provider_id="1", invoice_number="N", status="X")
    assert "voided" not in live.model_dump_json() and "voided" not in live.model_dump()
    voided = live.model_copy(update={"voided": True})
    assert '"voided":true' in voided.model_dump_json()
    assert InvoiceReceipt.model_validate_json(voided.model_dump_json()) == voided
