"""The Maast client: the seed body both ways, the error table row by row,
local validation, lookup, send and receipts; all through `httpx.MockTransport`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal

import httpx2 as httpx
import pytest

from jobs.errors import (
    ConfigurationError,
    InvoiceConflict,
    InvoiceError,
    InvoiceInvalid,
    InvoiceRejected,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
)
from jobs.models import Invoice, InvoiceReceipt, Provider
from jobs.providers import maast
from jobs.providers.answers import Row
from jobs.providers.maast import (
    ERRORS,
    MaastProvider,
    basic_token,
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
    maast_invoice,
    seed,
)

MaastWith = Callable[[Handler], tuple[MaastProvider, Recorder]]
SEED_BODY = seed("maast-create-request.json")
SEED_RESPONSE = seed("maast-create-response.json")
WORKED_TOKEN = "OjllZGVjMjFhMzFjMHh5ejc4OWUzMGEzNDE2YWJjMTIz"


def created(request: httpx.Request) -> httpx.Response:
    return json_response(200, SEED_RESPONSE)


def seed_invoice() -> Invoice:
    """The seed example, written in the neutral model by hand."""
    contact = {
        "first_name": "John",
        "last_name": "Doe",
        "firm_name": "CompanyXYZ",
        "phone": "9999999999",
        "email": "[email protected]",
        "address": {
            "line1": "4W 4th Avenue",
            "line2": "#401",
            "city": "San Mateo",
            "state": "CA",
            "zip": "94404",
            "zip4": "1234",
            "country_code": "840",
            "country": "United States",
        },
    }
    return Invoice.model_validate(
        {
            "number": "XYZ1234",
            "customer": {"id": "JOHNDOE", **contact},
            "lines": [{"description": "Pencils", "quantity": 10, "unit_price": "1.49"}],
            "currency": "USD",
            "tax": {"kind": "rate", "value": "2.345"},
            "invoice_date": "2025-01-01T00:00:00.000Z",
            "terms": {"kind": "days", "days": 10},
            "notes": {"footer": "Thanks for your business!", "terms": "Late fees calculated."},
            "payment": {"partial": False, "email_receipt": False, "ach": True},
            "maast": {
                "profile_id": "21200000000100000840",
                "from_contact": contact,
                "save_customer": True,
            },
        }
    )


# --- the seed, both ways ------------------------------------------------------------


def test_seed_invoice_builds_exactly_the_seed_body() -> None:
    assert request_from_invoice(seed_invoice()) == SEED_BODY


def test_seed_body_reads_back_to_the_seed_invoice() -> None:
    assert isinstance(SEED_BODY, dict)
    assert invoice_from_request(SEED_BODY) == seed_invoice()
    assert request_from_invoice(invoice_from_request(SEED_BODY)) == SEED_BODY


async def test_bytes_on_the_wire_are_the_seed_body(maast_with: MaastWith) -> None:
    provider, server = maast_with(created)
    await provider.create(seed_invoice(), send_now=False)
    request = server.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://provider.test/platform/invoice"
    assert server.body() == SEED_BODY
    assert b"1.49" in request.content and b"2.345" in request.content  # no float rounding


# --- auth and headers ---------------------------------------------------------------


def test_basic_token_worked_example() -> None:
    assert basic_token(API_KEY) == WORKED_TOKEN


async def test_requests_carry_the_documented_headers(maast_with: MaastWith) -> None:
    provider, server = maast_with(created)
    await provider.create(maast_invoice(), send_now=False)
    headers = server.requests[0].headers
    assert headers["authorization"] == f"Basic {WORKED_TOKEN}"
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/json"


async def test_prepare_create_hides_the_key(maast_with: MaastWith) -> None:
    provider, server = maast_with(created)
    prepared = provider.prepare_create(seed_invoice())
    assert prepared.headers["Authorization"] == "Basic ***"
    assert prepared.method == "POST"
    assert prepared.url == "https://provider.test/platform/invoice"
    assert prepared.json == SEED_BODY
    text = repr(prepared)
    assert API_KEY not in text and WORKED_TOKEN not in text
    assert server.requests == []


# --- the error table ------------------------------------------------------------------


def _envelope(code: int | None, message: str = "Refused", data: object = None) -> object:
    return {"code": code, "message": message, "data": data}


@pytest.mark.parametrize("row", ERRORS, ids=lambda r: f"{r.status}-{r.code}")
async def test_every_table_row(maast_with: MaastWith, row: Row) -> None:
    provider, _ = maast_with(lambda _: json_response(row.status, _envelope(row.code)))
    with pytest.raises(InvoiceError) as caught:
        await provider.create(maast_invoice(), send_now=False)
    assert type(caught.value) is row.error
    assert caught.value.status == row.status
    if row.code is not None and row.error is not RateLimited:
        assert caught.value.code == str(row.code)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(502, text="<html>Bad Gateway</html>"), ProviderUnavailable),
        (httpx.Response(503), ProviderUnavailable),
        (httpx.Response(504, text="gateway timeout"), OutcomeUnknown),
        (httpx.Response(500, text="oops"), OutcomeUnknown),
        (json_response(409, _envelope(3)), InvoiceRejected),
        (json_response(422, None), InvoiceRejected),
        (json_response(501, _envelope(99)), OutcomeUnknown),
        (json_response(401, None), ConfigurationError),
        (json_response(200, _envelope(2)), InvoiceRejected),
        (json_response(200, _envelope(11)), ConfigurationError),
        (json_response(200, _envelope(42)), OutcomeUnknown),
        (httpx.Response(200, text="<html>maintenance</html>"), OutcomeUnknown),
        (json_response(200, {"code": 0, "message": "Success"}), OutcomeUnknown),
        (json_response(200, [1, 2]), OutcomeUnknown),
    ],
)
async def test_answers_outside_the_table(
    maast_with: MaastWith, response: httpx.Response, expected: type[InvoiceError]
) -> None:
    provider, _ = maast_with(lambda _: response)
    with pytest.raises(InvoiceError) as caught:
        await provider.create(maast_invoice(), send_now=False)
    assert type(caught.value) is expected


async def test_rejection_keeps_status_code_message_and_fields(maast_with: MaastWith) -> None:
    data = [{"field": "line_items[0].unit_cost", "message": "too many decimals"}, "customer_id"]
    provider, _ = maast_with(lambda _: json_response(400, _envelope(2, "Invalid request", data)))
    with pytest.raises(InvoiceRejected) as caught:
        await provider.create(maast_invoice(), send_now=False)
    error = caught.value
    assert (error.status, error.code) == (400, "2")
    assert "Invalid request" in error.message
    assert [f.field for f in error.field_errors] == ["line_items[0].unit_cost", "customer_id"]


@pytest.mark.parametrize(
    ("message", "data"),
    [
        ("invoice_number already exists", None),
        ("Validation failed", {"invoice_number": ["Duplicate invoice number"]}),
        ("Invoice number XYZ is already in use", ["invoice_number"]),
    ],
)
async def test_duplicate_number_is_a_conflict(
    maast_with: MaastWith, message: str, data: object
) -> None:
    provider, _ = maast_with(lambda _: json_response(400, _envelope(2, message, data)))
    with pytest.raises(InvoiceConflict):
        await provider.create(maast_invoice(), send_now=False)


async def test_rate_limited_carries_retry_after(maast_with: MaastWith) -> None:
    provider, _ = maast_with(lambda _: httpx.Response(429, headers={"Retry-After": "12"}))
    with pytest.raises(RateLimited) as caught:
        await provider.create(maast_invoice(), send_now=False)
    assert caught.value.retry_after_s == 12.0


# --- receipts -------------------------------------------------------------------------


async def test_create_returns_the_receipt(maast_with: MaastWith) -> None:
    provider, _ = maast_with(created)
    receipt = await provider.create(seed_invoice(), send_now=False)
    assert receipt == InvoiceReceipt(
        provider=Provider.MAAST,
        provider_id="1234",
        invoice_number="XYZ1234",
        status="SAVED",
        link="https://app.maast.com/checkout/invoice/7d8e96ac261711e8b413acde4800bbbb",
        total=Decimal("100.45"),
        sent=False,
    )


def test_receipt_of_an_outstanding_invoice_without_link() -> None:
    data = {"invoice_id": 9, "status": "OUTSTANDING", "invoice_link": "", "amt_tran": "1.00"}
    receipt = receipt_from(data, maast_invoice())
    assert (receipt.sent, receipt.link, receipt.total) == (True, None, Decimal("1.00"))


# --- local validation -------------------------------------------------------------------


def test_validate_lists_every_problem() -> None:
    invoice = maast_invoice(
        number="A.VERY.LONG.NUMBER-1234567890",
        customer={"id": "C" * 33, "first_name": "F" * 33},
        currency="JPY",
        lines=[
            {"description": "half", "quantity": "1.5", "unit_price": "1"},
            {"description": "many", "quantity": 1000, "unit_price": "100000000"},
        ],
        tax={"kind": "rate", "value": "1.123456"},
        notes={"footer": "x" * 751, "terms": "y" * 501},
        maast={"save_customer": True, "from_contact": {"firm_name": "Firm"}},
        funding=[{"account_id": "a", "amount": "1"}],
    )
    with pytest.raises(InvoiceInvalid) as caught:
        MaastProvider.validate(MaastProvider.__new__(MaastProvider), invoice)
    fields = {f.field for f in caught.value.field_errors}
    assert fields == {
        "number",
        "customer.id",
        "customer.first_name",
        "customer.email",
        "customer.last_name",
        "maast.from_contact.phone",
        "maast.from_contact.email",
        "currency",
        "funding",
        "lines[0].quantity",
        "lines[1].quantity",
        "lines[1].unit_price",
        "tax.value",
        "notes.footer",
        "notes.terms",
    }


async def test_invalid_invoice_is_never_sent(maast_with: MaastWith) -> None:
    provider, server = maast_with(created)
    with pytest.raises(InvoiceInvalid):
        await create_once(provider, maast_invoice(currency="JPY"))
    assert server.requests == []


def test_valid_invoice_passes() -> None:
    MaastProvider.validate(MaastProvider.__new__(MaastProvider), seed_invoice())
    # A vault customer needs no contact at all.
    MaastProvider.validate(
        MaastProvider.__new__(MaastProvider), maast_invoice(customer={"id": "JOHNDOE"})
    )


def test_currency_table() -> None:
    body = request_from_invoice(maast_invoice(currency="AUD"))
    assert body["tran_currency"] == "036"
    assert invoice_from_request(body).currency == "AUD"


def test_date_terms_and_amount_tax() -> None:
    invoice = maast_invoice(
        invoice_date=date(2025, 2, 1),
        terms={"kind": "date", "due_date": "2025-03-01"},
        tax={"kind": "amount", "value": "3.50"},
    )
    body = request_from_invoice(invoice)
    assert body["date_invoice"] == "2025-02-01"
    assert body["payment_terms"] == {"type": "DATE", "value": "2025-03-01"}
    assert body["sales_tax"] == {"type": "AMOUNT", "value": Decimal("3.50")}
    assert invoice_from_request(body) == invoice


@pytest.mark.parametrize(
    "body",
    [
        {"invoice_number": "A", "customer_id": "C", "line_items": [], "merchant_id": 1},
        {"invoice_number": "A", "customer_id": "C", "line_items": "no"},
        {"invoice_number": "A", "customer_id": "C", "line_items": [{"sku": 1}]},
        {"invoice_number": "A", "customer_id": "C", "line_items": [], "tran_currency": "392"},
    ],
)
def test_bad_bodies_raise_value_error(body: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        invoice_from_request(body)


# --- lookup -------------------------------------------------------------------------------


def _listing(*rows: dict[str, object], pages: int = 1) -> httpx.Response:
    return json_response(
        200,
        {"code": 0, "message": "Success", "totalRecords": len(rows), "totalPages": pages}
        | {"data": list(rows)},
    )


async def test_find_filters_by_number_and_takes_the_lowest_id(maast_with: MaastWith) -> None:
    rows = [
        {"invoice_id": 12, "invoice_number": "INV-1", "status": "SAVED", "amt_tran": 15.25},
        {"invoice_id": 9, "invoice_number": "INV-1", "status": "OUTSTANDING", "amt_tran": 15.25},
        {"invoice_id": 3, "invoice_number": "INV-10", "status": "SAVED", "amt_tran": 1},
    ]
    provider, server = maast_with(lambda _: _listing(*rows))
    found = await provider.find(maast_invoice())
    assert found is not None and found.provider_id == "9" and found.sent
    params = server.requests[0].url.params
    assert params["filter"] == "invoice_number,EQ,INV-1"
    assert params["count"] == "100"


async def test_find_nothing_is_none(maast_with: MaastWith) -> None:
    provider, _ = maast_with(lambda _: _listing())
    assert await provider.find(maast_invoice()) is None


async def test_find_follows_pages_when_the_filter_is_ignored(maast_with: MaastWith) -> None:
    def pages(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        number = "INV-1" if page == 2 else f"OTHER-{page}"
        return _listing({"invoice_id": page, "invoice_number": number}, pages=5)

    provider, server = maast_with(pages)
    found = await provider.find(maast_invoice())
    assert found is not None and found.provider_id == "2"
    assert len(server.requests) == 5  # every page: a copy on a later one must not be missed


async def test_find_gives_up_without_guessing(maast_with: MaastWith) -> None:
    provider, _ = maast_with(lambda _: _listing({"invoice_id": 1, "invoice_number": "X"}, pages=99))
    with pytest.raises(OutcomeUnknown):
        await provider.find(maast_invoice())


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(500), OutcomeUnknown),
        (httpx.Response(503), ProviderUnavailable),
        (json_response(401, _envelope(11)), ConfigurationError),
    ],
)
async def test_find_failures_raise(
    maast_with: MaastWith, response: httpx.Response, expected: type[InvoiceError]
) -> None:
    provider, _ = maast_with(lambda _: response)
    with pytest.raises(expected):
        await provider.find(maast_invoice())


# --- send ---------------------------------------------------------------------------------

DRAFT = InvoiceReceipt(
    provider=Provider.MAAST, provider_id="1234", invoice_number="INV-1", status="SAVED"
)


async def test_send_then_reads_the_detail(maast_with: MaastWith) -> None:
    detail = {"invoice_id": 1234, "status": "OUTSTANDING", "invoice_link": "https://l/1"}

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/send"):
            return json_response(200, {"code": 0, "message": "Success"})
        return json_response(200, {"code": 0, "message": "Success", "data": detail})

    provider, recorder = maast_with(server)
    receipt = await provider.send(DRAFT, maast_invoice())
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("POST", "/platform/invoice/1234/send"),
        ("GET", "/platform/invoice/1234/detail"),
    ]
    assert (receipt.status, receipt.sent, receipt.link) == ("OUTSTANDING", True, "https://l/1")


async def test_send_succeeds_even_if_the_detail_fails(maast_with: MaastWith) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/send"):
            return json_response(200, {"code": 0, "message": "Success"})
        return httpx.Response(503)

    provider, _ = maast_with(server)
    receipt = await provider.send(DRAFT, maast_invoice())
    assert (receipt.status, receipt.sent) == ("OUTSTANDING", True)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (json_response(404, _envelope(7)), InvoiceRejected),
        (json_response(400, _envelope(2, "invoice is not SAVED")), InvoiceRejected),
        (httpx.Response(500), OutcomeUnknown),
    ],
)
async def test_send_failures(
    maast_with: MaastWith, response: httpx.Response, expected: type[InvoiceError]
) -> None:
    provider, _ = maast_with(lambda _: response)
    with pytest.raises(expected):
        await provider.send(DRAFT, maast_invoice())


def test_module_exports() -> None:
    assert set(maast.__all__) <= set(dir(maast))
