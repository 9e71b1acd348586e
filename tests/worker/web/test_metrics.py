"""`/metrics`: parses with prometheus_client, counts what the ledger did, reads the fleet."""

from __future__ import annotations

import httpx2
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from jobs.errors import ErrorInfo
from jobs.models import InvoiceReceipt, Provider
from worker import api
from worker.fleet import DEAD_AFTER_S, Heartbeat, read_workers
from worker.keys import Keys
from worker.ledger import Ledger
from worker.metrics import MetricsBuffer
from worker.settings import Settings

from ..support import invoice
from .conftest import ADMIN, READ


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


async def test_metrics_parse_and_count_created_rejected_retried_and_latency(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.redis_prefix)
    await api.enqueue_invoices(
        [invoice("M-1"), invoice("M-2")],
        provider=Provider.MAAST,
        settings=settings,
        redis=redis_client,
    )
    ledger = Ledger(redis_client, keys)
    one = await ledger.claim("maast:M-1", keys.job_id("maast:M-1", 1), early_sending=True)
    two = await ledger.claim("maast:M-2", keys.job_id("maast:M-2", 1), early_sending=True)
    assert one is not None and two is not None
    await one.mark_created(
        InvoiceReceipt(
            provider=Provider.MAAST, provider_id="p1", invoice_number="M-1", status="SAVED"
        )
    )
    await one.release()
    unavailable = ErrorInfo(kind="ProviderUnavailable", reason="unavailable", message="503")
    await two.retry_later(unavailable, count_failure=True)
    rejected = ErrorInfo(kind="InvoiceRejected", reason="rejected", message="no such customer")
    await two.dead_letter(rejected, attempts=2)
    buffer = MetricsBuffer()
    buffer.observe_call(Provider.MAAST, "create", "ok", 0.07)
    buffer.observe_call(Provider.MAAST, "create", "unavailable", 12.0)
    await buffer.flush(redis_client, keys)
    await client.post("/v1/providers/stax/pause", json={"reason": "checking"}, headers=ADMIN)
    beat = Heartbeat(redis_client, keys, [Provider.MAAST])
    await beat.beat(holding=3)

    r = await client.get("/metrics", headers=READ)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)

    def value(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert value("invoicer_invoices_created_total", provider="maast", reason="") == 1
    assert value("invoicer_invoices_retried_total", provider="maast", reason="unavailable") == 1
    assert value("invoicer_invoices_rejected_total", provider="maast", reason="rejected") == 1
    assert value("invoicer_enqueue_to_created_seconds_count", provider="maast") == 1
    assert value("invoicer_enqueue_to_created_seconds_bucket", provider="maast", le="+Inf") == 1
    call = {"provider": "maast", "op": "create"}
    assert value("invoicer_provider_call_seconds_bucket", **call, outcome="ok", le="0.1") == 1
    assert value("invoicer_provider_call_seconds_bucket", **call, outcome="ok", le="0.05") == 0
    assert (
        value("invoicer_provider_call_seconds_bucket", **call, outcome="unavailable", le="10.0")
        == 0
    )
    assert value("invoicer_provider_call_seconds_sum", **call, outcome="unavailable") == 12.0
    assert value("invoicer_invoices", state="created") == 1
    assert value("invoicer_invoices", state="rejected") == 1
    assert value("invoicer_dead_letters") == 1
    assert value("invoicer_queue_depth", provider="maast", due="now") == 2
    assert value("invoicer_paused", provider="stax", reason="checking") == 1
    assert value("invoicer_paused", provider="maast", reason="") == 0
    assert value("invoicer_workers", status="alive") == 1
    assert ("invoicer_limiter_slots_reserved", (("provider", "stax"),)) in got
    assert (await client.get("/metrics")).status_code == 401


async def test_each_worker_has_its_own_heartbeat_and_a_dead_one_shows_dead(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.redis_prefix)
    a = Heartbeat(redis_client, keys, [Provider.MAAST])
    b = Heartbeat(redis_client, keys, [Provider.STAX])
    await a.beat(holding=1)
    await b.beat(holding=0)
    found = {w.worker_id: w for w in await read_workers(redis_client, keys)}
    assert {found[a.worker_id].status, found[b.worker_id].status} == {"alive"}
    await b.stop()
    later = int(found[a.worker_id].last_beat_ms + (DEAD_AFTER_S + 1) * 1000)
    found = {w.worker_id: w for w in await read_workers(redis_client, keys, now_ms=later)}
    assert found[a.worker_id].status == "dead"  # stopped beating, never said goodbye
    assert found[b.worker_id].status == "stopped"
