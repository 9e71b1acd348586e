"""The inspection API: counts, stats, reset; and the in-process (thread) mode."""

from __future__ import annotations

import httpx2

from sandbox import SandboxClient, SandboxConfig, running_sandbox
from sandbox.state import ProviderStats
from tests.sandbox.conftest import MAAST_AUTH, STAX_AUTH


async def test_stats_count_provider_requests_only(
    http: httpx2.AsyncClient, sandbox: SandboxClient
) -> None:
    for n in range(3):
        await http.post(
            "/platform/invoice",
            json={"customer_id": "C", "invoice_number": f"N{n}"},
            headers=MAAST_AUTH,
        )
    await http.get("/platform/invoice")  # 401
    await http.get("/invoice/missing", headers=STAX_AUTH)  # 422
    await http.get("/_sandbox/stats")  # never counted
    stats = await sandbox.stats()
    maast, stax = stats["providers"]["maast"], stats["providers"]["stax"]  # type: ignore[index]
    assert maast["requests"] == 4 and maast["status_counts"] == {"200": 3, "401": 1}
    assert stax["requests"] == 1 and stax["status_counts"] == {"422": 1}
    assert sum(maast["per_second"].values()) == 4
    assert 1 <= maast["busiest_second"]["count"] <= 4
    assert stats["fault_events"] == []


async def test_reset_forgets_everything(http: httpx2.AsyncClient, sandbox: SandboxClient) -> None:
    await http.post(
        "/platform/invoice", json={"customer_id": "C", "invoice_number": "N"}, headers=MAAST_AUTH
    )
    assert await sandbox.created_counts("maast") == {"N": 1}
    await sandbox.reset()
    assert await sandbox.invoices("maast") == []
    assert await sandbox.created_counts("maast") == {}
    assert (await sandbox.stats())["providers"]["maast"]["requests"] == 0  # type: ignore[index]


async def test_config_endpoint_hides_keys(http: httpx2.AsyncClient, sandbox: SandboxClient) -> None:
    await sandbox.configure(SandboxConfig(stax_keys=frozenset({"secret-stax"})))
    shown = (await http.get("/_sandbox/config")).text
    assert "secret-stax" not in shown and "stax-sandbox-key" not in shown
    assert "secret-stax" not in repr(SandboxConfig(stax_keys=frozenset({"secret-stax"})))
    ok = await http.get("/invoice", headers={"authorization": "Bearer secret-stax"})
    assert ok.status_code == 200


async def test_in_process_mode() -> None:
    with running_sandbox(SandboxConfig(customers=frozenset({"ONLY"})), in_process=True) as url:
        async with httpx2.AsyncClient(base_url=url, trust_env=False) as http:
            body = {"customer_id": "OTHER", "invoice_number": "N"}
            response = await http.post("/platform/invoice", json=body, headers=MAAST_AUTH)
            assert response.status_code == 400
        async with SandboxClient(url) as client:
            assert await client.invoices("maast") == []


def test_busiest_windows_slide_over_one_and_five_seconds() -> None:
    stats = ProviderStats()
    for at_s in (100.0, 100.5, 101.2, 103.0, 104.9, 105.1, 110.0):
        stats.count(at_s)
    assert stats.busiest_window() == (100.0, 2)
    # 100.0 .. 104.9 is five requests inside five seconds; 105.1 is past 100.0 + 5.
    assert stats.busiest_window(5) == (100.0, 5)
    assert stats.summary()["busiest_5s"] == {"start": 100.0, "count": 5}
