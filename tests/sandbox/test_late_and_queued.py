"""Late commits and queued requests over real HTTP: the provider commits what
it received after the client gave up (read timeout, or the socket closed).

These are the faults that turn a client's timeout into a duplicate: the
client sees no answer, looks up, finds nothing, and the first request lands
afterwards. The sandbox runs as a subprocess, as for the worker tests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import httpx2
import pytest
from httpx_aiohttp.httpx2 import AiohttpTransport

from sandbox import Faults, FaultSpec, SandboxClient, SandboxConfig
from tests.sandbox.conftest import MAAST_AUTH, STAX_AUTH

READ_TIMEOUT_S = 0.3


def maast_body(number: str) -> dict[str, object]:
    return {"customer_id": "CUST0001", "invoice_number": number}


def stax_body(reference: str) -> dict[str, object]:
    return {"customer_id": "c", "url": "https://x/", "total": 5, "meta": {"reference": reference}}


@pytest.fixture
async def impatient(sandbox_url: str, sandbox: SandboxClient) -> AsyncIterator[httpx2.AsyncClient]:
    """A production-like client (aiohttp transport) with a short read timeout."""
    async with httpx2.AsyncClient(
        base_url=sandbox_url,
        transport=AiohttpTransport(),
        timeout=httpx2.Timeout(5.0, read=READ_TIMEOUT_S),
        trust_env=False,
    ) as client:
        yield client


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    """Wait until `check()` holds (the sandbox commits on its own schedule)."""
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "the sandbox never got there"
        await asyncio.sleep(0.05)


def fire_and_forget(sandbox_url: str, path: str, body: object, auth: dict[str, str]) -> None:
    """Send one whole request on a raw socket and close it at once, reading nothing."""
    port = int(sandbox_url.rsplit(":", 1)[1])
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth['authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(head.encode() + payload)


async def test_late_commit_lands_after_the_read_timeout(
    impatient: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    await sandbox.set_faults(Faults(late_commit=1.0, hold_s=2.0))
    with pytest.raises(httpx2.ReadTimeout):
        await impatient.post("/platform/invoice", json=maast_body("L-1"), headers=MAAST_AUTH)
    # The client gave up, and at that moment there is nothing to find...
    assert await sandbox.created_counts("maast") == {}
    lookup = await impatient.get(
        "/platform/invoice", params={"filter": "invoice_number,EQ,L-1"}, headers=MAAST_AUTH
    )
    assert lookup.json()["totalRecords"] == 0

    # ...then the request is committed all the same.
    async def landed() -> bool:
        return await sandbox.created_counts("maast") == {"L-1": 1}

    await eventually(landed)
    events = await sandbox.fault_events()
    assert [(e["kind"], e["key"], e["target"]) for e in events] == [
        ("late_commit", "L-1", "create")
    ]
    summary = await sandbox.copies_summary("maast")
    assert summary.late_commits == 1 and summary.live == 1
    stats = await sandbox.stats()
    assert stats["providers"]["maast"]["status_counts"] == {"200": 1, "late": 1}  # type: ignore[index]


async def test_a_patient_client_gets_the_late_answer(
    sandbox_url: str, sandbox: SandboxClient
) -> None:
    await sandbox.set_faults(Faults(stax=FaultSpec(late_commit=1.0, hold_s=0.3)))
    async with httpx2.AsyncClient(base_url=sandbox_url, timeout=5, trust_env=False) as patient:
        started = time.monotonic()
        response = await patient.post("/invoice", json=stax_body("P-1"), headers=STAX_AUTH)
    assert response.status_code == 200 and time.monotonic() - started >= 0.3
    assert response.json()["meta"]["reference"] == "P-1"


async def test_late_commit_can_hit_a_send(
    impatient: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    created = await impatient.post("/invoice", json=stax_body("S-1"), headers=STAX_AUTH)
    invoice_id = created.json()["id"]
    await sandbox.set_faults(Faults(late_commit=1.0, hold_s=1.0, targets=frozenset({"send"})))
    with pytest.raises(httpx2.ReadTimeout):
        await impatient.put(f"/invoice/{invoice_id}/send/email", headers=STAX_AUTH)

    async def sent() -> bool:
        return (await sandbox.invoices("stax"))[0]["status"] == "SENT"

    await eventually(sent)
    assert (await sandbox.copies_summary("stax")).late_commits == 1


async def _late_kinds(
    client: httpx2.AsyncClient, sandbox: SandboxClient, seed: int
) -> list[tuple[object, object]]:
    await sandbox.reset()
    await sandbox.set_faults(
        Faults(seed=seed, late_commit=0.3, error_after_commit=0.2, hold_s=0.01)
    )
    for n in range(30):
        await client.post("/platform/invoice", json=maast_body(f"D-{n}"), headers=MAAST_AUTH)
    return [(e["kind"], e["key"]) for e in await sandbox.fault_events()]


async def test_late_commits_follow_the_seed(sandbox_url: str, sandbox: SandboxClient) -> None:
    async with httpx2.AsyncClient(base_url=sandbox_url, timeout=5, trust_env=False) as client:
        first = await _late_kinds(client, sandbox, seed=11)
        assert sum(kind == "late_commit" for kind, _ in first) > 3
        assert await _late_kinds(client, sandbox, seed=11) == first
        assert await _late_kinds(client, sandbox, seed=12) != first


def commit_times(invoices: list[dict[str, object]]) -> list[float]:
    """When Maast stored each invoice (its db_timestamp), in creation order."""
    return [
        datetime.strptime(str(i["db_timestamp"])[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
        for i in invoices
    ]


async def test_a_bounded_pool_queues_requests_past_their_timeout(
    impatient: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    await sandbox.configure(SandboxConfig(workers=1, faults=Faults(latency_ms=400)))
    creates = [
        impatient.post("/platform/invoice", json=maast_body(f"Q-{n}"), headers=MAAST_AUTH)
        for n in range(3)
    ]
    outcomes = await asyncio.gather(*creates, return_exceptions=True)
    assert all(isinstance(o, httpx2.ReadTimeout) for o in outcomes)
    assert (await sandbox.pools())["maast"]["max_waiting"] >= 1

    async def all_landed() -> bool:
        return len(await sandbox.invoices("maast")) == 3

    await eventually(all_landed)
    times = commit_times(await sandbox.invoices("maast"))
    # One at a time: each waited for the one before (0.4 s each), long after
    # its client had stopped waiting.
    assert all(later - earlier >= 0.35 for earlier, later in itertools.pairwise(times))


async def test_without_a_pool_requests_run_together(
    impatient: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    await sandbox.set_faults(Faults(latency_ms=400))
    creates = [
        impatient.post("/platform/invoice", json=maast_body(f"T-{n}"), headers=MAAST_AUTH)
        for n in range(3)
    ]
    await asyncio.gather(*creates, return_exceptions=True)

    async def all_landed() -> bool:
        return len(await sandbox.invoices("maast")) == 3

    await eventually(all_landed)
    times = commit_times(await sandbox.invoices("maast"))
    assert max(times) - min(times) < 0.3
    assert (await sandbox.pools()) == {}


async def test_queued_requests_of_gone_clients_are_processed_in_order(
    sandbox_url: str, sandbox: SandboxClient
) -> None:
    await sandbox.configure(SandboxConfig(workers=1, faults=Faults(stax=FaultSpec(latency_ms=300))))
    for n in range(4):
        fire_and_forget(sandbox_url, "/invoice", stax_body(f"G-{n}"), STAX_AUTH)
        await asyncio.sleep(0.05)  # arrival order is the order sent

    async def all_landed() -> bool:
        return len(await sandbox.invoices("stax")) == 4

    await eventually(all_landed)
    references = [i["meta"]["reference"] for i in await sandbox.invoices("stax")]  # type: ignore[index]
    assert references == ["G-0", "G-1", "G-2", "G-3"]
    summary = await sandbox.copies_summary("stax")
    assert summary.live == 4 and summary.live_not_one == []
