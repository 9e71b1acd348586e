"""The HTTP API over ASGI against real Redis: intake, reads, cancel, dead letters, pauses."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx2
import redis.asyncio as aioredis

from jobs.errors import ErrorInfo
from jobs.models import Provider
from worker.keys import Keys
from worker.ledger import Ledger, State
from worker.settings import Settings

from .conftest import ADMIN, READ


def invoice(number: str, quantity: Any = 1, customer: str = "CUST0001") -> dict[str, Any]:
    return {
        "number": number,
        "customer": {"id": customer, "first_name": "Ada", "last_name": "L", "email": "a@x.io"},
        "lines": [{"description": "Consulting", "quantity": quantity, "unit_price": "12.50"}],
        "invoice_date": "2026-10-31",
    }


async def post(client: httpx2.AsyncClient, body: object, **params: str) -> httpx2.Response:
    return await client.post("/v1/invoices", json=body, headers=ADMIN, params=params)


async def test_one_invoice_is_accepted_with_its_key_and_batch(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis, settings: Settings
) -> None:
    r = await post(client, {"provider": "maast", "invoices": invoice("API-1"), "batch": "api"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == 1 and body["batch_id"].startswith("api-")
    assert body["invoices"] == [{"index": 0, "number": "API-1", "invoice_key": "maast:API-1"}]
    record = await Ledger(redis_client, Keys(settings.redis_prefix)).get("maast:API-1")
    assert record is not None and record.state is State.QUEUED


async def test_a_list_is_all_or_nothing_with_every_problem_by_index_and_field(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis, settings: Settings
) -> None:
    items = [invoice("OK-1"), invoice("BAD-1", quantity=-3), invoice("OK-2"), {"number": "X"}]
    r = await post(client, {"provider": "maast", "invoices": items})
    assert r.status_code == 422
    error = r.json()["error"]
    assert "nothing was enqueued" in error["message"]
    where = {(p["index"], p["field"]) for p in error["problems"]}
    assert (1, "lines[0].quantity") in where
    assert any(p["index"] == 3 for p in error["problems"])
    assert not any(p["index"] in (0, 2) for p in error["problems"])
    assert await redis_client.zcard(Keys(settings.redis_prefix).queue(Provider.MAAST)) == 0


async def test_partial_enqueues_the_good_and_reports_the_bad(client: httpx2.AsyncClient) -> None:
    items = [invoice("P-1"), invoice("P-2", quantity="1,5"), invoice("P-3")]
    r = await post(client, {"provider": "maast", "invoices": items}, partial="true")
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == 2 and body["rejected_count"] == 1
    assert [p["index"] for p in body["rejected"]] == [1]
    assert body["dead_lettered"] == 1  # parked like the CLI's invalid records


async def test_a_retried_post_makes_no_second_invoice_and_other_content_is_409(
    client: httpx2.AsyncClient,
) -> None:
    first = await post(client, {"provider": "stax", "invoices": [invoice("R-1"), invoice("R-2")]})
    assert first.status_code == 202
    again = await post(client, {"provider": "stax", "invoices": [invoice("R-1"), invoice("R-2")]})
    assert again.status_code == 202
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 2
    changed = await post(client, {"provider": "stax", "invoices": [invoice("R-1", quantity=2)]})
    assert changed.status_code == 409
    error = changed.json()["error"]
    assert "R-1" in error["message"] and error["problems"][0]["invoice_number"] == "R-1"


async def test_a_conflict_in_a_list_enqueues_nothing_of_it_unless_partial(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.redis_prefix)
    assert (
        await post(client, {"provider": "maast", "invoices": [invoice("C-1")]})
    ).status_code == 202
    batches = await redis_client.zcard(keys.batches())
    items = [invoice("C-0"), invoice("C-1", quantity=5), invoice("C-2")]
    r = await post(client, {"provider": "maast", "invoices": items})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert "nothing was enqueued" in error["message"] and "partial=true" in error["fix"]
    assert [(p["index"], p["invoice_number"]) for p in error["problems"]] == [(1, "C-1")]
    ledger = Ledger(redis_client, keys)
    assert await ledger.get("maast:C-0") is None and await ledger.get("maast:C-2") is None
    assert await redis_client.zcard(keys.queue(Provider.MAAST)) == 1
    assert await redis_client.zcard(keys.batches()) == batches  # not even an empty batch
    partial = await post(client, {"provider": "maast", "invoices": items}, partial="true")
    assert partial.status_code == 202, partial.text
    body = partial.json()
    assert body["accepted"] == 2 and [c["index"] for c in body["conflicts"]] == [1]
    assert await redis_client.zcard(keys.queue(Provider.MAAST)) == 3


async def test_bad_envelopes_say_what_to_fix(client: httpx2.AsyncClient) -> None:
    cases: list[tuple[bytes, int, str]] = [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 422, "JSON object"),
        (b'{"provider": "paypal", "invoices": []}', 422, "provider"),
        (b'{"provider": "maast", "invoices": [], "extra": 1}', 422, "extra"),
        (b'{"provider": "maast", "invoices": []}', 422, "invoices"),
    ]
    for raw, status, needle in cases:
        r = await client.post("/v1/invoices", content=raw, headers=ADMIN)
        assert r.status_code == status, (raw, r.text)
        assert needle in json.dumps(r.json()["error"]), (raw, r.text)
    many = {"provider": "maast", "invoices": [invoice(f"M-{i}") for i in range(1001)]}
    assert (await post(client, many)).status_code == 413
    hook = {"provider": "maast", "invoices": invoice("H-1"), "callback_url": "ftp://x"}
    assert (await post(client, hook)).status_code == 422


async def test_the_read_token_reads_and_cannot_act(client: httpx2.AsyncClient) -> None:
    r = await client.post(
        "/v1/invoices", json={"provider": "maast", "invoices": invoice("T-1")}, headers=READ
    )
    assert r.status_code == 403
    assert (await client.get("/v1/providers", headers=READ)).status_code == 200
    assert (await client.get("/v1/providers")).status_code == 401


async def test_an_invoice_with_its_history(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis, settings: Settings
) -> None:
    posted = await post(client, {"provider": "stax", "invoices": invoice("INV/7")})
    assert posted.status_code == 202, posted.text
    keys = Keys(settings.redis_prefix)
    held = await Ledger(redis_client, keys).claim("stax:INV/7", keys.job_id("stax:INV/7", 1))
    assert held is not None
    await held.retry_later(
        ErrorInfo(kind="ProviderUnavailable", reason="unavailable", message="503"),
        count_failure=True,
    )
    await held.release()
    r = await client.get("/v1/invoices/stax/INV/7", headers=READ)
    assert r.status_code == 200
    body = r.json()
    assert body["state"] == "queued" and body["attempts"] == 1
    assert [h["event"] for h in body["history"]] == ["enqueued", "retry later"]
    assert body["history"][1]["detail"] == "503" and body["history"][1]["at_ms"] > 0
    missing = await client.get("/v1/invoices/maast/NOPE", headers=READ)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_invoice"


async def test_batch_status_report_and_cancel(client: httpx2.AsyncClient) -> None:
    items = [invoice(f"B-{i}") for i in range(5)]
    r = await post(client, {"provider": "maast", "invoices": items, "batch": "month end"})
    batch = r.json()["batch_id"]
    status = (await client.get(f"/v1/batches/{batch}", headers=READ)).json()
    assert (
        status["counts"]["queued"] == 5 and status["total"] == 5 and status["name"] == "month end"
    )
    assert "eta_s" in status and "rate_per_minute" in status
    assert (await client.post(f"/v1/batches/{batch}/cancel", headers=READ)).status_code == 403
    cancelled = await client.post(f"/v1/batches/{batch}/cancel", headers=ADMIN)
    assert cancelled.status_code == 200 and cancelled.json()["cancelled"] == 5
    after = (await client.get(f"/v1/batches/{batch}", headers=READ)).json()
    assert after["counts"]["discarded"] == 5 and after["cancelled"] == 5
    report = await client.get(f"/v1/batches/{batch}/report.csv", headers=READ)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(report.text)))
    assert len(rows) == 5 and {row["state"] for row in rows} == {"discarded"}
    assert all("cancelled" in row["reason"] for row in rows)
    listed = (await client.get("/v1/batches", headers=READ)).json()
    assert listed[0]["batch_id"] == batch
    for path in ("/v1/batches/nosuch", "/v1/batches/nosuch/report.csv"):
        assert (await client.get(path, headers=READ)).status_code == 404
    assert (await client.post("/v1/batches/nosuch/cancel", headers=ADMIN)).status_code == 404


async def test_file_upload_streams_and_reports_per_line(client: httpx2.AsyncClient) -> None:
    lines = [json.dumps(invoice(f"F-{i}")) for i in range(3)]
    lines.insert(1, '{"number": "F-bad", "customer": {"id": "C"}, "lines": []}')
    r = await client.post(
        "/v1/batches",
        content="\n".join(lines).encode(),
        headers={**ADMIN, "Content-Type": "application/x-ndjson"},
        params={"provider": "maast", "batch": "upload"},
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == 3 and body["rejected_count"] == 1
    assert body["rejected"][0]["line"] == 2 and body["rejected"][0]["field"] == "lines"
    csv_body = b"invoice_number,customer_id\nX-1,C1\n"
    bad = await client.post(
        "/v1/batches",
        content=csv_body,
        headers={**ADMIN, "Content-Type": "text/csv"},
        params={"provider": "maast"},
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unreadable_file"
    wrong = await client.post(
        "/v1/batches",
        content=b"x",
        headers={**ADMIN, "Content-Type": "application/pdf"},
        params={"provider": "maast"},
    )
    assert wrong.status_code == 415


async def test_dead_letters_list_show_requeue_corrected_and_discard(
    client: httpx2.AsyncClient,
) -> None:
    items = [invoice("D-1", quantity=0), invoice("D-2", quantity=0), invoice("D-3", quantity=0)]
    r = await post(client, {"provider": "maast", "invoices": items, "batch": "d"}, partial="true")
    batch = r.json()["batch_id"]
    listed = (
        await client.get("/v1/dead-letters", headers=READ, params={"reason": "invalid"})
    ).json()
    assert {e["invoice_key"] for e in listed["entries"]} == {"maast:D-1", "maast:D-2", "maast:D-3"}
    assert (await client.get("/v1/dead-letters", headers=READ, params={"provider": "stax"})).json()[
        "entries"
    ] == []
    of_maast = await client.get(
        "/v1/dead-letters", headers=READ, params={"provider": "maast", "batch": batch, "limit": 2}
    )
    assert of_maast.json()["matching"] == 3 and len(of_maast.json()["entries"]) == 2
    shown = (await client.get("/v1/dead-letters/maast:D-1", headers=READ)).json()
    assert shown["reason"] == "invalid" and shown["batch"] == batch
    bad_fix = await client.post(
        "/v1/dead-letters/maast:D-1/requeue",
        json={"payload": invoice("D-1", quantity=-1)},
        headers=ADMIN,
    )
    assert bad_fix.status_code == 422
    fixed = await client.post(
        "/v1/dead-letters/maast:D-1/requeue",
        json={"payload": invoice("D-1", quantity=2)},
        headers=ADMIN,
    )
    assert fixed.status_code == 200 and fixed.json()["outcome"] == "superseded"
    gone = await client.post("/v1/dead-letters/maast:D-2/discard", headers=ADMIN)
    assert gone.json() == {"invoice_key": "maast:D-2", "discarded": True}
    bulk = await client.post("/v1/dead-letters/discard", json={"batch": batch}, headers=ADMIN)
    assert bulk.json() == {"discarded": 1}
    assert (await client.get("/v1/dead-letters", headers=READ)).json()["total"] == 0
    assert (
        await client.post("/v1/dead-letters/discard", json={}, headers=ADMIN)
    ).status_code == 422
    assert (await client.get("/v1/dead-letters/maast:D-9", headers=READ)).status_code == 404


async def test_pause_and_resume(client: httpx2.AsyncClient) -> None:
    r = await client.post(
        "/v1/providers/stax/pause", json={"reason": "month end check"}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["changed"] is True
    states = {p["provider"]: p for p in (await client.get("/v1/providers", headers=READ)).json()}
    assert states["stax"]["paused"] is True and states["stax"]["paused_reason"] == "month end check"
    assert states["maast"]["paused"] is False
    assert (await client.post("/v1/providers/stax/resume", headers=READ)).status_code == 403
    resumed = await client.post("/v1/providers/stax/resume", headers=ADMIN)
    assert resumed.json()["was_paused"] is True
    assert (await client.post("/v1/providers/paypal/pause", headers=ADMIN)).status_code == 422
