"""The Stax client: request bodies (meta, funding, due_at), the error table row
by row, local validation, the paginated lookup, send and receipts."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import httpx2 as httpx
import pytest

from jobs.errors import (
    ConfigurationError,
    InvoiceError,
    InvoiceInvalid,
    InvoiceRejected,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
)
from jobs.models import InvoiceReceipt, Provider
from jobs.providers.answers import Row
from jobs.providers.stax import (
    ERRORS,
    MAX_META_CHARS,
    StaxProvider,
    invoice_from_request,
    receipt_from,
    request_from_invoice,
)
from tests.jobs.providers.conftest import (
    API_KEY,
    Handler,
    Recorder,
    create_once,
    json_response,
    stax_invoice,
)

StaxWith = Callable[[Handler], tuple[StaxProvider, Recorder]]
CUSTOMER = "5a7f1c3e-0000-4000-8000-000000000001"
STAX_ID = "0a1b2c3d-1111-4222-8333-444455556666"


def invoice_json(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": STAX_ID,
        "status": "DRAFT",
        "total": 22.10,
        "url": "https://app.staxpayments.com/#/bill/",
        "meta": {"reference": "INV-1"},
        "created_at": "2025-03-01 10:00:00",
    }
    return body | changes


def created(request: httpx.Request) -> httpx.Response:
    return json_response(200, invoice_json())


# --- request bodies ---------------------------------------------------------------


def test_request_body() -> None:
    body = request_from_invoice(
        stax_invoice(
            notes={"memo": "Thanks!"},
            payment={"card": True, "ach": False, "tips": False, "partial": True},
            terms={"kind": "days", "days": 30},
        )
    )
    assert body == {
        "customer_id": CUSTOMER,
        "url": "https://app.staxpayments.com/#/bill/",
        "total": Decimal("22.10"),
        "meta": {
            "lineItems": [
                {"item": "Pencils", "details": "Pencils", "quantity": 10, "price": Decimal("1.49")},
                {"item": "A4", "details": "Pads", "quantity": 2, "price": Decimal("3.10")},
            ],
            "subtotal": Decimal("21.10"),
            "tax": Decimal("1.00"),
            "memo": "Thanks!",
            "reference": "INV-1",
            "isCCPaymentEnabled": True,
            "isACHPaymentEnabled": False,
            "isTipEnabled": False,
        },
        "is_partial_payment_enabled": True,
        "invoice_date_at": "2025-03-01 00:00:00",
        "due_at": "2025-03-31 23:59:59",
    }


def test_rate_tax_goes_as_its_amount_and_totals_match() -> None:
    invoice = stax_invoice(tax={"kind": "rate", "value": "8.875"})
    body = request_from_invoice(invoice)
    totals = invoice.totals()
    meta = body["meta"]
    assert isinstance(meta, dict)
    assert (body["total"], meta["subtotal"], meta["tax"]) == (
        totals.total,
        totals.subtotal,
        totals.tax,
    )
    assert totals.tax == Decimal("1.87")  # 21.10 * 8.875% = 1.872625, half-up


def test_send_now_only_when_asked_and_funding_and_date_terms() -> None:
    invoice = stax_invoice(
        send=True,
        terms={"kind": "date", "due_date": "2025-12-19"},
        funding=[
            {"account_id": "acc-1", "amount": "20.00"},
            {"account_id": "acc-2", "amount": "2.10"},
        ],
    )
    body = request_from_invoice(invoice)
    assert body["send_now"] is True
    assert body["due_at"] == "2025-12-19 23:59:59"
    assert body["funding"] == [
        {"account_id": "acc-1", "amount": Decimal("20.00")},
        {"account_id": "acc-2", "amount": Decimal("2.10")},
    ]
    assert "send_now" not in request_from_invoice(stax_invoice())
    assert invoice_from_request(body) == invoice


def test_timestamps_are_utc_without_zone() -> None:
    body = request_from_invoice(stax_invoice(invoice_date="2025-03-01T23:30:00-02:00"))
    assert body["invoice_date_at"] == "2025-03-02 01:30:00"


async def test_wire_headers_and_exact_money(stax_with: StaxWith) -> None:
    provider, server = stax_with(created)
    await provider.create(stax_invoice(), send_now=False)
    request = server.requests[0]
    assert (request.method, str(request.url)) == ("POST", "https://provider.test/invoice")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert b'"total":22.10' in request.content
    assert server.body() == request_from_invoice(stax_invoice())


async def test_prepare_create_hides_the_key(stax_with: StaxWith) -> None:
    provider, server = stax_with(created)
    prepared = provider.prepare_create(stax_invoice())
    assert prepared.headers["Authorization"] == "Bearer ***"
    assert API_KEY not in repr(prepared)
    assert prepared.json == request_from_invoice(stax_invoice())
    assert server.requests == []


# --- error table ------------------------------------------------------------------


@pytest.mark.parametrize("row", ERRORS, ids=lambda r: str(r.status))
async def test_every_table_row(stax_with: StaxWith, row: Row) -> None:
    provider, _ = stax_with(lambda _: json_response(row.status, {"total": ["is wrong"]}))
    with pytest.raises(InvoiceError) as caught:
        await provider.create(stax_invoice(), send_now=False)
    assert type(caught.value) is row.error
    assert caught.value.status == row.status


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(201, json={"id": STAX_ID, "status": "DRAFT"}), None),
        (httpx.Response(202, json={"id": STAX_ID}), None),
        (httpx.Response(200, text="<html>ok?</html>"), OutcomeUnknown),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), ProviderUnavailable),
        (httpx.Response(503), ProviderUnavailable),
        (httpx.Response(401, json=["not team admin"]), ConfigurationError),
        (httpx.Response(401, json={"error": "Unauthorized"}), ConfigurationError),
        (httpx.Response(409), InvoiceRejected),
        (httpx.Response(507), OutcomeUnknown),
        (httpx.Response(429), RateLimited),
    ],
)
async def test_answers_outside_the_table(
    stax_with: StaxWith, response: httpx.Response, expected: type[InvoiceError] | None
) -> None:
    provider, _ = stax_with(lambda _: response)
    if expected is None:
        receipt = await provider.create(stax_invoice(), send_now=False)
        assert receipt.provider_id == STAX_ID
        return
    with pytest.raises(InvoiceError) as caught:
        await provider.create(stax_invoice(), send_now=False)
    assert type(caught.value) is expected


async def test_422_keeps_the_field_errors(stax_with: StaxWith) -> None:
    body = {
        "customer_id": ["The customer id field is required."],
        "total": ["The total field is required.", "The total must be a number."],
    }
    provider, _ = stax_with(lambda _: json_response(422, body))
    with pytest.raises(InvoiceRejected) as caught:
        await provider.create(stax_invoice(), send_now=False)
    error = caught.value
    assert error.status == 422
    assert [(f.field, f.message) for f in error.field_errors] == [
        ("customer_id", "The customer id field is required."),
        ("total", "The total field is required."),
        ("total", "The total must be a number."),
    ]
    assert "customer id field is required" in error.message


async def test_bare_string_array(stax_with: StaxWith) -> None:
    provider, _ = stax_with(lambda _: json_response(400, ["Something is off."]))
    with pytest.raises(InvoiceRejected) as caught:
        await provider.create(stax_invoice(), send_now=False)
    assert caught.value.field_errors[0].message == "Something is off."


async def test_429_retry_after(stax_with: StaxWith) -> None:
    provider, _ = stax_with(lambda _: httpx.Response(429, headers={"Retry-After": "30"}))
    with pytest.raises(RateLimited) as caught:
        await provider.create(stax_invoice(), send_now=False)
    assert caught.value.retry_after_s == 30.0


# --- receipts ---------------------------------------------------------------------


async def test_create_receipt(stax_with: StaxWith) -> None:
    provider, _ = stax_with(created)
    receipt = await provider.create(stax_invoice(), send_now=False)
    assert receipt == InvoiceReceipt(
        provider=Provider.STAX,
        provider_id=STAX_ID,
        invoice_number="INV-1",
        status="DRAFT",
        link=f"https://app.staxpayments.com/#/bill/{STAX_ID}",
        total=Decimal("22.10"),
        sent=False,
    )


@pytest.mark.parametrize(
    ("status", "sent"),
    [
        ("DRAFT", False),
        ("SENT", True),
        ("VIEWED", True),
        ("PAID", True),
        ("PARTIALLY APPLIED", True),
        ("DELETED", False),
    ],
)
def test_receipt_sent_flag(status: str, sent: bool) -> None:
    receipt = receipt_from(invoice_json(status=status, total="22.10"), stax_invoice())
    assert receipt.sent is sent
    assert receipt.total == Decimal("22.10")


# --- validation -------------------------------------------------------------------


def test_validate_lists_every_problem() -> None:
    invoice = stax_invoice(
        currency="EUR",
        stax={"url": "  "},
        funding=[{"account_id": "a", "amount": "20.00"}],
        lines=[{"description": "x" * 61_000, "quantity": 1, "unit_price": "1"}],
    )
    with pytest.raises(InvoiceInvalid) as caught:
        StaxProvider.validate(StaxProvider.__new__(StaxProvider), invoice)
    assert {f.field for f in caught.value.field_errors} == {
        "currency",
        "stax.url",
        "funding",
        "lines",
    }
    assert any(str(MAX_META_CHARS) in f.message for f in caught.value.field_errors)


def test_funding_must_add_up_to_the_cent() -> None:
    def check(*amounts: str) -> None:
        funding = [{"account_id": f"a{i}", "amount": a} for i, a in enumerate(amounts)]
        StaxProvider.validate(StaxProvider.__new__(StaxProvider), stax_invoice(funding=funding))

    check("22.10")
    check("20.00", "2.10")
    with pytest.raises(InvoiceInvalid):
        check("20.00", "2.09")


async def test_invalid_invoice_is_never_sent(stax_with: StaxWith) -> None:
    provider, server = stax_with(created)
    with pytest.raises(InvoiceInvalid):
        await create_once(provider, stax_invoice(currency="CAD"))
    assert server.requests == []


@pytest.mark.parametrize(
    "body",
    [
        {"customer_id": "c", "meta": {"reference": "A", "lineItems": []}, "files": []},
        {"customer_id": "c", "meta": {"reference": "A", "lineItems": [], "poNumber": 1}},
        {"customer_id": "c", "meta": "text"},
        {
            "customer_id": "c",
            "total": 5,
            "meta": {"reference": "A", "lineItems": [{"item": "a", "quantity": 1, "price": 4}]},
        },
    ],
)
def test_bad_bodies_raise_value_error(body: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        invoice_from_request(body)


# --- lookup -----------------------------------------------------------------------


def _page(page: int, last: int, *rows: dict[str, object]) -> httpx.Response:
    return json_response(
        200,
        {"total": 999, "per_page": 50, "current_page": page, "last_page": last, "data": list(rows)},
    )


async def test_find_follows_pages_and_matches_reference_exactly(stax_with: StaxWith) -> None:
    def pages(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        near_miss = invoice_json(id=f"other-{page}", meta={"reference": "INV-10"})
        if page != 3:
            return _page(page, 4, near_miss)
        return _page(page, 4, near_miss, invoice_json(status="SENT"))

    provider, server = stax_with(pages)
    found = await provider.find(stax_invoice())
    assert found is not None and found.provider_id == STAX_ID and found.sent
    # Every page: a copy on a later one must not be missed.
    assert [r.url.params["page"] for r in server.requests] == ["1", "2", "3", "4"]
    params = server.requests[0].url.params
    assert params.get_list("keywords[]") == ["INV-1"]
    assert params["per_page"] == "50"


async def test_find_reads_meta_given_as_text(stax_with: StaxWith) -> None:
    row = invoice_json(meta='{"reference": "INV-1"}')
    provider, _ = stax_with(lambda _: _page(1, 1, row))
    assert await provider.find(stax_invoice()) is not None


async def test_find_takes_the_oldest_of_duplicates(stax_with: StaxWith) -> None:
    rows = [
        invoice_json(id="newer", created_at="2025-03-02 00:00:00"),
        invoice_json(id="older", created_at="2025-03-01 00:00:00"),
    ]
    provider, _ = stax_with(lambda _: _page(1, 1, *rows))
    found = await provider.find(stax_invoice())
    assert found is not None and found.provider_id == "older"


async def test_find_after_the_last_page_is_none(stax_with: StaxWith) -> None:
    provider, server = stax_with(lambda r: _page(int(r.url.params["page"]), 2))
    assert await provider.find(stax_invoice()) is None
    assert len(server.requests) == 2


async def test_find_without_page_info_stops_on_a_short_page(stax_with: StaxWith) -> None:
    provider, server = stax_with(lambda _: json_response(200, {"data": []}))
    assert await provider.find(stax_invoice()) is None
    assert len(server.requests) == 1


async def test_find_gives_up_without_guessing(stax_with: StaxWith) -> None:
    provider, server = stax_with(lambda r: _page(int(r.url.params["page"]), 500))
    with pytest.raises(OutcomeUnknown):
        await provider.find(stax_invoice())
    assert len(server.requests) == 10


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(500), OutcomeUnknown),
        (httpx.Response(502), ProviderUnavailable),
        (httpx.Response(401), ConfigurationError),
        (httpx.Response(404), ConfigurationError),
    ],
)
async def test_find_failures_raise(
    stax_with: StaxWith, response: httpx.Response, expected: type[InvoiceError]
) -> None:
    provider, _ = stax_with(lambda _: response)
    with pytest.raises(expected):
        await provider.find(stax_invoice())


# --- send ---------------------------------------------------------------------------

DRAFT = InvoiceReceipt(
    provider=Provider.STAX, provider_id=STAX_ID, invoice_number="INV-1", status="DRAFT"
)


async def test_send_by_email(stax_with: StaxWith) -> None:
    provider, server = stax_with(lambda _: json_response(200, invoice_json(status="SENT")))
    receipt = await provider.send(DRAFT, stax_invoice())
    request = server.requests[0]
    assert (request.method, request.url.path) == ("PUT", f"/invoice/{STAX_ID}/send/email")
    assert (receipt.status, receipt.sent) == ("SENT", True)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (json_response(400, {"id": ["Invoice could not be found"]}), InvoiceRejected),
        (json_response(404, {"id": ["Invoice could not be found"]}), InvoiceRejected),
        (json_response(422, {"id": ["The selected id is invalid."]}), InvoiceRejected),
        (httpx.Response(500), OutcomeUnknown),
    ],
)
async def test_send_failures(
    stax_with: StaxWith, response: httpx.Response, expected: type[InvoiceError]
) -> None:
    provider, _ = stax_with(lambda _: response)
    with pytest.raises(expected):
        await provider.send(DRAFT, stax_invoice())
