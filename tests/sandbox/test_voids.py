"""Voiding over real HTTP (Maast cancel, Stax delete) and the per-number counts.

Voided invoices stay visible with their status, so a lookup after a void
still sees them and a test can tell live copies from voided ones.
"""

from __future__ import annotations

import httpx2

from sandbox import Faults, SandboxClient
from sandbox.copies import NumberCopies
from tests.sandbox.conftest import MAAST_AUTH, STAX_AUTH


async def maast_create(http: httpx2.AsyncClient, number: str) -> int:
    body = {"customer_id": "CUST0001", "invoice_number": number}
    response = await http.post("/platform/invoice", json=body, headers=MAAST_AUTH)
    assert response.status_code == 200
    return int(response.json()["data"]["invoice_id"])


async def stax_create(http: httpx2.AsyncClient, reference: str, **extra: object) -> str:
    body = {"customer_id": "c", "url": "https://x/", "total": 5, "meta": {"reference": reference}}
    response = await http.post("/invoice", json=body | extra, headers=STAX_AUTH)
    assert response.status_code == 200
    return str(response.json()["id"])


async def cancel(http: httpx2.AsyncClient, invoice_id: int) -> httpx2.Response:
    return await http.delete(f"/platform/invoice/{invoice_id}/cancel", headers=MAAST_AUTH)


async def test_maast_cancel_locks_the_invoice(http: httpx2.AsyncClient) -> None:
    invoice_id = await maast_create(http, "C-1")
    canceled = await cancel(http, invoice_id)
    assert canceled.status_code == 200 and canceled.json()["code"] == 0
    assert canceled.json()["data"]["status"] == "CANCELED"
    again = await cancel(http, invoice_id)
    assert again.status_code == 400 and again.json()["code"] == 2
    for tail in ("send", "resend"):
        refused = await http.post(f"/platform/invoice/{invoice_id}/{tail}", headers=MAAST_AUTH)
        assert refused.status_code == 400 and refused.json()["code"] == 2
    detail = await http.get(f"/platform/invoice/{invoice_id}/detail", headers=MAAST_AUTH)
    assert detail.json()["data"]["status"] == "CANCELED"
    missing = await cancel(http, 999)
    assert missing.status_code == 404 and missing.json()["code"] == 7


async def test_maast_cannot_cancel_a_paid_invoice(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    invoice_id = await maast_create(http, "P-1")
    await http.post(f"/platform/invoice/{invoice_id}/send", headers=MAAST_AUTH)
    paid = await sandbox.pay("maast", invoice_id)
    assert paid["status"] == "PAID" and paid["amt_balance"] == 0
    refused = await cancel(http, invoice_id)
    assert refused.status_code == 400 and refused.json()["code"] == 2
    assert "PAID" in refused.json()["message"]
    assert (await sandbox.copies("maast")) == {"P-1": NumberCopies(created=1, live=1, sent=1)}


async def test_maast_listing_keeps_canceled_invoices_and_filters_by_status(
    http: httpx2.AsyncClient,
) -> None:
    first, second = await maast_create(http, "K-1"), await maast_create(http, "K-1")
    await cancel(http, first)
    found = await http.get(
        "/platform/invoice", params={"filter": "invoice_number,EQ,K-1"}, headers=MAAST_AUTH
    )
    statuses = {i["invoice_id"]: i["status"] for i in found.json()["data"]}
    assert statuses == {first: "CANCELED", second: "SAVED"}
    live = await http.get(
        "/platform/invoice",
        params=[("filter", "invoice_number,EQ,K-1"), ("filter", "status,NE,CANCELED")],
        headers=MAAST_AUTH,
    )
    assert [i["invoice_id"] for i in live.json()["data"]] == [second]
    canceled = await http.get(
        "/platform/invoice", params={"filter": "status,EQ,CANCELED"}, headers=MAAST_AUTH
    )
    assert canceled.json()["totalRecords"] == 1


async def test_stax_delete_then_again_then_send(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    invoice_id = await stax_create(http, "D-1")
    deleted = await http.delete(f"/invoice/{invoice_id}", headers=STAX_AUTH)
    assert deleted.status_code == 200
    assert deleted.json()["status"] == "DELETED" and deleted.json()["deleted_at"]
    again = await http.delete(f"/invoice/{invoice_id}", headers=STAX_AUTH)
    assert again.status_code == 422
    assert again.json() == {"deleted_at": ["The invoice is already deleted."]}
    send = await http.put(f"/invoice/{invoice_id}/send/email", headers=STAX_AUTH)
    assert send.status_code == 422 and "deleted_at" in send.json()
    got = await http.get(f"/invoice/{invoice_id}", headers=STAX_AUTH)
    assert got.json()["status"] == "DELETED"
    listed = await http.get("/invoice", params={"keywords[]": "D-1"}, headers=STAX_AUTH)
    assert [i["status"] for i in listed.json()["data"]] == ["DELETED"]
    by_status = await http.get("/invoice", params={"status": "DELETED"}, headers=STAX_AUTH)
    assert by_status.json()["total"] == 1
    unknown = await http.delete("/invoice/nope", headers=STAX_AUTH)
    assert unknown.status_code == 422 and unknown.json() == {"id": ["The selected id is invalid."]}
    assert (await sandbox.copies("stax")) == {"D-1": NumberCopies(created=1, live=0, sent=0)}


async def test_stax_refuses_to_delete_a_paid_invoice(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    invoice_id = await stax_create(http, "P-1", send_now=True)
    paid = await sandbox.pay("stax", invoice_id)
    assert paid["status"] == "PAID" and paid["balance_due"] == 0 and paid["total_paid"] == 5
    refused = await http.delete(f"/invoice/{invoice_id}", headers=STAX_AUTH)
    assert refused.status_code == 422 and "status" in refused.json()


async def test_pay_an_unknown_invoice_is_404(http: httpx2.AsyncClient) -> None:
    assert (await http.post("/_sandbox/invoices/stax/nope/pay")).status_code == 404


async def test_copies_count_live_and_sent_per_number(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    # two copies, one voided, the other sent (what verification leaves).
    keep, extra = await stax_create(http, "A-1"), await stax_create(http, "A-1")
    await http.put(f"/invoice/{keep}/send/email", headers=STAX_AUTH)
    await http.delete(f"/invoice/{extra}", headers=STAX_AUTH)
    # B-1: two copies, both sent (a customer got two invoices).
    await stax_create(http, "B-1", send_now=True)
    await stax_create(http, "B-1", send_now=True)
    # C-1: a sent copy that was then deleted (sent once, but nothing live).
    gone = await stax_create(http, "C-1", send_now=True)
    await http.delete(f"/invoice/{gone}", headers=STAX_AUTH)
    # D-1: one live draft.
    await stax_create(http, "D-1")
    assert await sandbox.copies("stax") == {
        "A-1": NumberCopies(created=2, live=1, sent=1),
        "B-1": NumberCopies(created=2, live=2, sent=2),
        "C-1": NumberCopies(created=1, live=0, sent=0),
        "D-1": NumberCopies(created=1, live=1, sent=0),
    }
    summary = await sandbox.copies_summary("stax")
    assert (summary.numbers, summary.created, summary.live, summary.sent) == (4, 6, 4, 3)
    assert summary.voided == 2 and summary.late_commits == 0
    assert summary.live_not_one == ["B-1", "C-1"]
    assert summary.sent_not_one == ["B-1", "C-1", "D-1"]
    assert summary.sent_more_than_one == ["B-1"]
    assert (await sandbox.copies_summary("maast")).numbers == 0


async def test_maast_copies_follow_cancel_and_send(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    first, second = await maast_create(http, "M-1"), await maast_create(http, "M-1")
    await http.post(f"/platform/invoice/{second}/send", headers=MAAST_AUTH)
    await cancel(http, first)
    assert await sandbox.copies("maast") == {"M-1": NumberCopies(created=2, live=1, sent=1)}
    summary = await sandbox.copies_summary("maast")
    assert summary.live_not_one == [] and summary.sent_not_one == [] and summary.voided == 1


async def test_voids_are_fault_targets(http: httpx2.AsyncClient, sandbox: SandboxClient) -> None:
    invoice_id = await stax_create(http, "V-1")
    await sandbox.set_faults(Faults(error_after_commit=1.0, targets=frozenset({"void"})))
    lost = await http.delete(f"/invoice/{invoice_id}", headers=STAX_AUTH)
    assert lost.status_code == 500  # the answer is lost, the delete happened
    assert (await sandbox.invoices("stax"))[0]["status"] == "DELETED"
    again = await http.delete(f"/invoice/{invoice_id}", headers=STAX_AUTH)
    assert again.status_code == 422  # a refusal commits nothing, so no fault
    events = await sandbox.fault_events()
    assert [(e["kind"], e["target"], e["key"]) for e in events] == [
        ("error_after_commit", "void", "V-1")
    ]
