"""Maast over real HTTP: auth, validation shapes, create/list/lookup/send, duplicates."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2

from sandbox import SandboxClient, SandboxConfig
from tests.sandbox.conftest import MAAST_AUTH

SEED_BODY = json.loads((Path(__file__).parent / "maast_seed_body.json").read_text())


def body(number: str = "INV-1", **extra: object) -> dict[str, Any]:
    """A small valid create body."""
    return {
        "customer_id": "CUST0001",
        "invoice_number": number,
        "line_items": [{"quantity": 3, "description": "Widget", "unit_cost": 2.5}],
        **extra,
    }


async def create(http: httpx2.AsyncClient, payload: dict[str, Any]) -> httpx2.Response:
    return await http.post("/platform/invoice", json=payload, headers=MAAST_AUTH)


def parsed(response: httpx2.Response) -> Any:
    """The JSON body, amounts as Decimal."""
    return json.loads(response.content, parse_float=Decimal)


def fields(response: httpx2.Response) -> set[str]:
    data = parsed(response)["data"]
    assert isinstance(data, list)
    return {item["field"] for item in data}


async def test_missing_or_wrong_key_is_401_code_11(http: httpx2.AsyncClient) -> None:
    wrong = "Basic " + base64.b64encode(b":nope").decode()
    for headers in ({}, {"authorization": wrong}, {"authorization": "Bearer maast-sandbox-key"}):
        response = await http.post("/platform/invoice", json=body(), headers=headers)
        assert response.status_code == 401
        assert parsed(response)["code"] == 11


async def test_key_in_username_position_is_refused_by_default(http: httpx2.AsyncClient) -> None:
    user_form = "Basic " + base64.b64encode(b"maast-sandbox-key:").decode()
    response = await http.post(
        "/platform/invoice", json=body(), headers={"authorization": user_form}
    )
    assert response.status_code == 401


async def test_forbidden_key_is_403_code_6(http: httpx2.AsyncClient) -> None:
    token = base64.b64encode(b":maast-forbidden-key").decode()
    response = await http.get("/platform/invoice", headers={"authorization": f"Basic {token}"})
    assert response.status_code == 403
    assert parsed(response)["code"] == 6


async def test_official_guide_example_is_accepted_with_maast_totals(
    http: httpx2.AsyncClient,
) -> None:
    response = await create(http, SEED_BODY)
    assert response.status_code == 200, response.text
    doc = parsed(response)
    assert doc["code"] == 0 and doc["message"] == "Success"
    invoice = doc["data"]
    assert isinstance(invoice, dict)
    # 10 x 1.49 = 14.90; RATE 2.345 % of it = 0.349... -> 0.35 (half-up).
    assert invoice["amt_sub_total"] == Decimal("14.90")
    assert invoice["amt_tax"] == Decimal("0.35")
    assert invoice["amt_tran"] == invoice["amt_balance"] == Decimal("15.25")
    assert invoice["status"] == "SAVED" and invoice["invoice_link"] is None
    assert invoice["date_due"] == "2025-01-11"  # DAYS 10 after 2025-01-01
    assert b'"amt_sub_total":14.90' in response.content  # exact digits, a JSON number


async def test_validation_errors_are_400_code_2_with_field_list(http: httpx2.AsyncClient) -> None:
    bad = {
        "invoice_number": "X" * 26,
        "tran_currency": "USD",
        "date_invoice": "01/02/2025",
        "line_items": [{"quantity": 1000, "unit_cost": 1.234}],
        "footer_note": "f" * 751,
    }
    response = await create(http, bad)
    assert response.status_code == 400
    assert parsed(response)["code"] == 2
    assert fields(response) == {
        "customer_id",
        "invoice_number",
        "tran_currency",
        "date_invoice",
        "line_items[0].description",
        "line_items[0].quantity",
        "line_items[0].unit_cost",
        "footer_note",
    }
    for item in parsed(response)["data"]:
        assert set(item) == {"field", "message"}


async def test_invoice_number_charset_and_contacts(http: httpx2.AsyncClient) -> None:
    response = await create(http, body("INV 1/2", billing_contact={"email_address": "a@b.c"}))
    assert fields(response) == {
        "invoice_number",
        "billing_contact.first_name",
        "billing_contact.last_name",
    }
    ok = await create(http, body("A-b_9", date_invoice="2025-02-03"))
    assert ok.status_code == 200


async def test_unknown_customer_needs_save_customer(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    await sandbox.configure(SandboxConfig(customers=frozenset({"KNOWN"})))
    assert fields(await create(http, body())) == {"customer_id"}
    saving = body(save_customer=True)
    assert fields(await create(http, saving)) == {"billing_contact"}
    contact = {"first_name": "Ann", "last_name": "Lee", "email_address": "ann@example.com"}
    assert (await create(http, {**saving, "billing_contact": contact})).status_code == 200
    assert (await create(http, body("INV-2"))).status_code == 200  # now in the vault


async def test_vault_customer_then_invoice(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    await sandbox.configure(SandboxConfig(customers=frozenset()))
    customer = {"customer_id": "CUST0001", "customer_firm_name": "Acme"}
    added = await http.post("/platform/vault/customer", json=customer, headers=MAAST_AUTH)
    assert added.status_code == 200 and parsed(added)["code"] == 0
    again = await http.post("/platform/vault/customer", json=customer, headers=MAAST_AUTH)
    assert again.status_code == 400
    assert (await create(http, body())).status_code == 200


async def test_duplicate_numbers_accepted_by_default_and_counted(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    first = parsed(await create(http, body("DUP-1")))
    second = parsed(await create(http, body("DUP-1")))
    assert first["data"]["invoice_id"] != second["data"]["invoice_id"]
    assert await sandbox.created_counts("maast") == {"DUP-1": 2}
    assert await sandbox.duplicates("maast") == ["DUP-1"]


async def test_duplicate_switch_rejects_with_code_2(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    await sandbox.configure(SandboxConfig(maast_reject_duplicate_numbers=True))
    assert (await create(http, body("DUP-2"))).status_code == 200
    response = await create(http, body("DUP-2"))
    assert response.status_code == 400
    doc = parsed(response)
    assert doc["code"] == 2 and doc["message"] == "invoice_number already exists"
    assert await sandbox.created_counts("maast") == {"DUP-2": 1}


async def test_list_filter_order_and_pages(http: httpx2.AsyncClient) -> None:
    for number in ("B-2", "A-1", "C-3", "A-1"):
        await create(http, body(number))
    found = await http.get(
        "/platform/invoice", params={"filter": "invoice_number,EQ,A-1"}, headers=MAAST_AUTH
    )
    doc = parsed(found)
    assert doc["totalRecords"] == 2 and doc["totalPages"] == 1
    assert {i["invoice_number"] for i in doc["data"]} == {"A-1"}
    page = await http.get(
        "/platform/invoice",
        params={"count": "2", "page": "1", "order_on": "invoice_number", "order_by": "asc"},
        headers=MAAST_AUTH,
    )
    listed = parsed(page)
    assert listed["totalRecords"] == 4 and listed["totalPages"] == 2
    assert [i["invoice_number"] for i in listed["data"]] == ["B-2", "C-3"]
    default_desc = parsed(await http.get("/platform/invoice", headers=MAAST_AUTH))
    assert default_desc["data"][0]["invoice_number"] == "C-3"
    status = await http.get(
        "/platform/invoice", params={"filter": "status,EQ,OUTSTANDING"}, headers=MAAST_AUTH
    )
    assert parsed(status)["totalRecords"] == 0
    bad = await http.get("/platform/invoice", params={"filter": "status,IS,X"}, headers=MAAST_AUTH)
    assert bad.status_code == 400 and parsed(bad)["code"] == 2


async def test_detail_send_and_resend_rules(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    invoice_id = parsed(await create(http, body("S-1")))["data"]["invoice_id"]
    detail = await http.get(f"/platform/invoice/{invoice_id}/detail", headers=MAAST_AUTH)
    assert parsed(detail)["data"]["status"] == "SAVED"
    sent = await http.post(
        f"/platform/invoice/{invoice_id}/send",
        json={"email_address": ["ann@example.com"]},
        headers=MAAST_AUTH,
    )
    data = parsed(sent)["data"]
    assert isinstance(data, dict)
    assert data["status"] == "OUTSTANDING" and data["date_sent"]
    assert str(data["invoice_link"]).startswith("https://app.maast.com/checkout/invoice/")
    again = await http.post(f"/platform/invoice/{invoice_id}/send", headers=MAAST_AUTH)
    assert again.status_code == 400 and parsed(again)["code"] == 2
    resent = await http.post(f"/platform/invoice/{invoice_id}/resend", headers=MAAST_AUTH)
    assert resent.status_code == 200
    invoices = await sandbox.invoices("maast")
    assert invoices[0]["status"] == "OUTSTANDING"


async def test_unknown_invoice_and_path(http: httpx2.AsyncClient, sandbox: SandboxClient) -> None:
    missing = await http.get("/platform/invoice/999/detail", headers=MAAST_AUTH)
    assert missing.status_code == 404 and parsed(missing)["code"] == 7
    nowhere = await http.get("/platform/nothing/here", headers=MAAST_AUTH)
    assert nowhere.status_code == 404 and parsed(nowhere)["code"] == 7
    await sandbox.configure(SandboxConfig(maast_unknown_invoice_status=400))
    missing = await http.post("/platform/invoice/999/send", headers=MAAST_AUTH)
    assert missing.status_code == 400 and parsed(missing)["code"] == 2
