"""A slow provider over real HTTP: latency on every call kind, with jitter,
apart from the outcome faults (`latency_targets`).

Production runs use latency above a worker's lease (15-20 s) so a killed
worker's requests are still in flight when its lease expires; the tests use
a fraction of a second, the mechanism is the same.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable

import httpx2
import pytest

from sandbox import Faults, FaultSpec, SandboxClient
from tests.sandbox.conftest import MAAST_AUTH, STAX_AUTH

LATENCY_MS, JITTER_MS = 250, 100
EVERY_KIND = frozenset({"create", "lookup", "send", "void"})


async def timed(call: Awaitable[httpx2.Response]) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def test_every_stax_call_kind_is_slowed(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    await sandbox.set_faults(
        Faults(latency_ms=LATENCY_MS, latency_jitter_ms=JITTER_MS, targets=EVERY_KIND)
    )
    body = {"customer_id": "c", "url": "https://x/", "total": 5, "meta": {"reference": "S"}}
    created, t_create = await timed(http.post("/invoice", json=body, headers=STAX_AUTH))
    invoice_id = created.json()["id"]
    _, t_list = await timed(http.get("/invoice", params={"keywords[]": "S"}, headers=STAX_AUTH))
    _, t_get = await timed(http.get(f"/invoice/{invoice_id}", headers=STAX_AUTH))
    _, t_send = await timed(http.put(f"/invoice/{invoice_id}/send/email", headers=STAX_AUTH))
    other = await http.post("/invoice", json=body, headers=STAX_AUTH)
    _, t_void = await timed(http.delete(f"/invoice/{other.json()['id']}", headers=STAX_AUTH))
    for elapsed in (t_create, t_list, t_get, t_send, t_void):
        assert elapsed >= LATENCY_MS / 1000
    # Customers are not a call kind the product makes in a run: never slowed.
    _, t_customer = await timed(http.post("/customer", json={"email": "a@b"}, headers=STAX_AUTH))
    assert t_customer < LATENCY_MS / 1000


async def test_every_maast_call_kind_is_slowed(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    await sandbox.set_faults(Faults(maast=FaultSpec(latency_ms=LATENCY_MS, targets=EVERY_KIND)))
    body = {"customer_id": "C", "invoice_number": "M-1"}
    created, t_create = await timed(http.post("/platform/invoice", json=body, headers=MAAST_AUTH))
    invoice_id = created.json()["data"]["invoice_id"]
    path = f"/platform/invoice/{invoice_id}"
    _, t_detail = await timed(http.get(f"{path}/detail", headers=MAAST_AUTH))
    _, t_send = await timed(http.post(f"{path}/send", headers=MAAST_AUTH))
    second = await http.post("/platform/invoice", json=body, headers=MAAST_AUTH)
    _, t_void = await timed(
        http.delete(
            f"/platform/invoice/{second.json()['data']['invoice_id']}/cancel", headers=MAAST_AUTH
        )
    )
    for elapsed in (t_create, t_detail, t_send, t_void):
        assert elapsed >= LATENCY_MS / 1000


async def test_latency_targets_apart_from_outcome_targets(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    await sandbox.set_faults(
        Faults(
            latency_ms=LATENCY_MS,
            latency_targets=frozenset({"lookup"}),
            error_before_commit=1.0,
            targets=frozenset({"create"}),
        )
    )
    body = {"customer_id": "C", "invoice_number": "T-1"}
    failed, t_create = await timed(http.post("/platform/invoice", json=body, headers=MAAST_AUTH))
    assert failed.status_code == 500 and t_create < LATENCY_MS / 1000
    listed, t_list = await timed(http.get("/platform/invoice", headers=MAAST_AUTH))
    assert listed.status_code == 200 and t_list >= LATENCY_MS / 1000


@pytest.mark.parametrize("seed", [1, 2])
async def test_jitter_spreads_the_latency(
    http: httpx2.AsyncClient, sandbox: SandboxClient, seed: int
) -> None:
    await sandbox.set_faults(
        Faults(seed=seed, latency_ms=50, latency_jitter_ms=300, targets=frozenset({"lookup"}))
    )
    times = [(await timed(http.get("/invoice", headers=STAX_AUTH)))[1] for _ in range(8)]
    assert min(times) >= 0.05
    assert max(times) - min(times) > 0.05  # not one fixed delay
