"""Stax over real HTTP: auth, 422 shapes, funding, create/list/get/send, limits and the block."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx2

from sandbox import SandboxClient, SandboxConfig
from tests.sandbox.conftest import MAAST_AUTH, STAX_AUTH

URL = "https://app.staxpayments.com/#/bill/"


def body(reference: str = "REF-1", **extra: object) -> dict[str, object]:
    """A small valid create body."""
    return {
        "customer_id": "cust-1",
        "url": URL,
        "total": 10,
        "meta": {"reference": reference},
    } | extra


async def create(http: httpx2.AsyncClient, payload: object) -> httpx2.Response:
    return await http.post("/invoice", json=payload, headers=STAX_AUTH)


def parsed(response: httpx2.Response) -> Any:
    """The JSON body, amounts as Decimal."""
    return json.loads(response.content, parse_float=Decimal)


async def test_bad_bearer_is_401(http: httpx2.AsyncClient, sandbox: SandboxClient) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic x"}):
        response = await http.post("/invoice", json=body(), headers=headers)
        assert response.status_code == 401
        assert parsed(response) == {"error": "Unauthorized"}
    assert await sandbox.invoices("stax") == []


async def test_required_fields_are_422_field_keyed(http: httpx2.AsyncClient) -> None:
    response = await create(http, {"total": "abc"})
    assert response.status_code == 422
    assert parsed(response) == {
        "customer_id": ["The customer id field is required."],
        "url": ["The url field is required."],
        "total": ["The total must be a number."],
    }


async def test_funding_must_add_up_exactly(http: httpx2.AsyncClient) -> None:
    legs = [{"account_id": "a", "amount": 4.5}, {"account_id": "b", "amount": "5.50"}]
    assert (await create(http, body(funding=legs))).status_code == 200
    thirds = [{"account_id": x, "amount": 3.33} for x in "abc"]
    refused = await create(http, body(funding=thirds))
    assert refused.status_code == 422 and set(parsed(refused)) == {"funding"}
    # 0.1 + 0.2 == 0.3 holds in Decimal (it would not in float).
    tenths = [{"account_id": "a", "amount": 0.1}, {"account_id": "b", "amount": 0.2}]
    assert (await create(http, body(total=0.3, funding=tenths))).status_code == 200


async def test_meta_size_limit(http: httpx2.AsyncClient) -> None:
    big = await create(http, body() | {"meta": {"memo": "x" * 60_000}})
    assert big.status_code == 422 and set(parsed(big)) == {"meta"}


async def test_create_returns_full_draft_and_201_switch(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    response = await create(http, body(total=12.34))
    assert response.status_code == 200
    invoice = parsed(response)
    assert invoice["status"] == "DRAFT" and invoice["sent_at"] is None
    assert invoice["total"] == invoice["balance_due"] == Decimal("12.34")
    assert isinstance(invoice["customer"], dict) and invoice["customer"]["id"] == "cust-1"
    await sandbox.configure(SandboxConfig(stax_create_status=201))
    now = await create(http, body(send_now=True))
    assert now.status_code == 201
    assert parsed(now)["status"] == "SENT" and parsed(now)["sent_at"]


async def test_same_body_twice_makes_two_invoices(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    await create(http, body("TWICE"))
    await create(http, body("TWICE"))
    assert await sandbox.created_counts("stax") == {"TWICE": 2}
    assert await sandbox.duplicates("stax") == ["TWICE"]


async def test_keywords_find_meta_reference_under_switch(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    for reference in ("INV-1", "INV-10", "OTHER"):
        await create(http, body(reference))
    found = await http.get("/invoice", params={"keywords[]": "inv-1"}, headers=STAX_AUTH)
    page = parsed(found)
    assert page["total"] == 2 and page["current_page"] == 1 and page["last_page"] == 1
    refs = {i["meta"]["reference"] for i in page["data"]}
    assert refs == {"INV-1", "INV-10"}
    await sandbox.configure(SandboxConfig(stax_keywords_match_reference=False))
    none = await http.get("/invoice", params={"keywords[]": "INV-1"}, headers=STAX_AUTH)
    assert parsed(none)["total"] == 0 and parsed(none)["data"] == []


async def test_pagination_is_laravel_style_newest_first(http: httpx2.AsyncClient) -> None:
    for n in range(5):
        await create(http, body(f"P-{n}"))
    response = await http.get("/invoice", params={"per_page": "2", "page": "2"}, headers=STAX_AUTH)
    page = parsed(response)
    assert (page["total"], page["per_page"], page["last_page"], page["from"], page["to"]) == (
        5,
        2,
        3,
        3,
        4,
    )
    assert [i["meta"]["reference"] for i in page["data"]] == ["P-2", "P-1"]
    assert str(page["next_page_url"]).endswith("page=3")


async def test_get_and_send_flows(http: httpx2.AsyncClient, sandbox: SandboxClient) -> None:
    invoice_id = parsed(await create(http, body()))["id"]
    got = await http.get(f"/invoice/{invoice_id}", headers=STAX_AUTH)
    assert parsed(got)["status"] == "DRAFT"
    unknown = await http.get("/invoice/nope", headers=STAX_AUTH)
    assert unknown.status_code == 422
    assert parsed(unknown) == {"id": ["The selected id is invalid."]}
    for tail in ("send/email", "send", "send/sms"):
        sent = await http.put(
            f"/invoice/{invoice_id}/{tail}", json={"ccEmails": ["a@b.c"]}, headers=STAX_AUTH
        )
        assert sent.status_code == 200 and parsed(sent)["status"] == "SENT"
    missing = await http.put("/invoice/nope/send/email", headers=STAX_AUTH)
    assert missing.status_code == 400
    assert parsed(missing) == {"id": ["Invoice could not be found"]}
    await sandbox.configure(SandboxConfig(stax_reject_draft_sends=True))
    draft_id = parsed(await create(http, body("D")))["id"]
    refused = await http.put(f"/invoice/{draft_id}/send/email", headers=STAX_AUTH)
    assert refused.status_code == 422


async def test_customer_create(http: httpx2.AsyncClient) -> None:
    empty = await http.post("/customer", json={}, headers=STAX_AUTH)
    assert empty.status_code == 422 and set(parsed(empty)) == {"firstname"}
    made = await http.post(
        "/customer", json={"firstname": "Ann", "lastname": "Lee"}, headers=STAX_AUTH
    )
    customer_id = parsed(made)["id"]
    created = parsed(await create(http, body(customer_id=customer_id)))
    by_name = await http.get("/invoice", params={"keywords[]": "ann lee"}, headers=STAX_AUTH)
    assert [i["id"] for i in parsed(by_name)["data"]] == [created["id"]]


async def test_rate_limit_gives_429_with_retry_after(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    await sandbox.configure(SandboxConfig(stax_rate_per_window=5, window_s=0.5))
    statuses = [(await http.get("/invoice", headers=STAX_AUTH)).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    limited = await http.get("/invoice", headers=STAX_AUTH)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    await asyncio.sleep(0.6)
    assert (await http.get("/invoice", headers=STAX_AUTH)).status_code == 200


async def test_more_than_ten_failures_block_the_ip(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    await sandbox.configure(SandboxConfig(stax_block_s=0.5))
    for _ in range(10):
        assert (await create(http, {})).status_code == 422
    assert (await create(http, body())).status_code == 200  # ten failures: not yet
    assert (await create(http, {})).status_code == 422  # the eleventh starts the block
    blocked = await create(http, body())
    assert blocked.status_code == 429 and "retry-after" in blocked.headers
    assert (await http.get("/invoice", headers=STAX_AUTH)).status_code == 429
    assert (await sandbox.stats())["blocked_ips"]
    await asyncio.sleep(0.6)
    assert (await create(http, body())).status_code == 200
    assert await sandbox.created_counts("stax") == {"REF-1": 2}


async def test_maast_throttle_is_optional(http: httpx2.AsyncClient, sandbox: SandboxClient) -> None:
    for _ in range(20):
        assert (await http.get("/platform/invoice", headers=MAAST_AUTH)).status_code == 200
    await sandbox.configure(SandboxConfig(maast_rate_per_window=2, window_s=5))
    codes = [
        (await http.get("/platform/invoice", headers=MAAST_AUTH)).status_code for _ in range(3)
    ]
    assert codes == [200, 200, 429]
