"""`GET /metrics`: the fleet's figures in Prometheus text format (docs/metrics.md).

Counters and histograms come from the shared hash the ledger scripts and
the workers' flushes fill (`worker.metrics`); gauges are read at scrape
time from counters and indexes the ledger maintains (one pipeline, a fixed
number of O(1) commands, whatever the number of invoices). The text is
written by prometheus_client's own exposition code.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from jobs.models import Provider
from worker.fleet import read_workers
from worker.limits import SAFETY
from worker.metrics import CALL_BUCKETS_S, COUNTERS, ENQUEUE_TO_CREATED_BUCKETS_S
from worker.pauses import WINDOW_MS, pause_state
from worker.replies import decoded, text
from worker.web.auth import READER
from worker.web.context import Context, WebContext

router = APIRouter(tags=["metrics"])

_STATES = ("queued", "sending", "created", "sent", "in_doubt", "rejected", "discarded")


@router.get(
    "/metrics",
    dependencies=[READER],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(ctx: Context) -> Response:
    """Every figure of the fleet, for Prometheus (needs the read token)."""
    families = await collect(ctx)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class _Fixed:
    """A collector that hands out metric families read beforehand (collect() is sync)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


async def collect(ctx: WebContext) -> list[Metric]:
    """Read everything `/metrics` shows, in one pipeline plus the pause and worker reads."""
    keys, redis = ctx.keys, ctx.redis
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.metrics())
        pipe.hgetall(keys.totals())
        pipe.zcard(keys.dead_letters())
        pipe.zcard(keys.webhook_outbox())
        pipe.time()
        for p in Provider:
            account = ctx.account(p)
            pipe.zcard(keys.queue(p))
            pipe.zcount(keys.queue(p), "-inf", now_ms)
            pipe.get(keys.rate_tat(p, account))
            pipe.zcount(keys.failures(p, account), now_ms - WINDOW_MS, "+inf")
        stored, totals, dead, outbox, redis_time, *per_provider = await pipe.execute()
    families: list[Metric] = [*_stored(decoded(stored))]
    totals = decoded(totals)
    invoices = GaugeMetricFamily(
        "invoicer_invoices", "Invoices per ledger state.", labels=["state"]
    )
    for state in _STATES:
        invoices.add_metric([state], int(totals.get(state) or 0))
    families.append(invoices)
    families.append(
        _gauge("invoicer_in_flight", "Invoices a worker is sending.", totals, "sending")
    )
    families.append(
        _gauge("invoicer_in_doubt", "Invoices whose create may have landed.", totals, "in_doubt")
    )
    families.append(
        GaugeMetricFamily("invoicer_dead_letters", "Dead-letter queue size.", value=int(dead))
    )
    families.append(
        GaugeMetricFamily(
            "invoicer_webhook_outbox", "Webhook deliveries waiting.", value=int(outbox)
        )
    )
    redis_now_us = int(redis_time[0]) * 1_000_000 + int(redis_time[1])
    families += await _per_provider(ctx, per_provider, redis_now_us)
    families.append(await _workers(ctx, now_ms))
    return families


def _gauge(name: str, doc: str, totals: dict[str, str], field: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=int(totals.get(field) or 0))


def _stored(stored: dict[str, str]) -> Iterator[Metric]:
    """The counters and histograms of the shared hash."""
    counters = {
        name: CounterMetricFamily(f"invoicer_invoices_{name}", doc, labels=["provider", "reason"])
        for name, doc in COUNTERS.items()
    }
    hist: dict[tuple[str, tuple[str, ...]], dict[str, float]] = defaultdict(dict)
    for field, value in stored.items():
        kind, _, rest = field.partition("|")
        parts = rest.split("|")
        if kind == "c" and len(parts) == 3 and parts[0] in counters:
            counters[parts[0]].add_metric([parts[1], parts[2]], float(value))
        elif kind == "h" and len(parts) >= 3:
            hist[(parts[0], tuple(parts[1:-1]))][parts[-1]] = float(value)
    yield from counters.values()
    yield _histogram(
        "invoicer_provider_call_seconds",
        "Provider HTTP call latency, by operation and outcome.",
        ["provider", "op", "outcome"],
        CALL_BUCKETS_S,
        {labels: v for (name, labels), v in hist.items() if name == "call" and len(labels) == 3},
    )
    yield _histogram(
        "invoicer_enqueue_to_created_seconds",
        "Time from enqueue to created at the provider.",
        ["provider"],
        ENQUEUE_TO_CREATED_BUCKETS_S,
        {ls: v for (name, ls), v in hist.items() if name == "enqueue_to_created" and len(ls) == 1},
    )


def _histogram(
    name: str,
    doc: str,
    labels: list[str],
    bounds: tuple[float, ...],
    series: dict[tuple[str, ...], dict[str, float]],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for label_values, fields in sorted(series.items()):
        running = 0.0
        buckets: list[tuple[str, float]] = []
        for index, bound in enumerate((*bounds, float("inf"))):
            running += fields.get(str(index), 0.0)
            buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
        family.add_metric(list(label_values), buckets, sum_value=fields.get("sum", 0.0))
    return family


async def _per_provider(ctx: WebContext, replies: list[Any], now_us: int) -> list[Metric]:
    depth = GaugeMetricFamily(
        "invoicer_queue_depth", "Jobs in the provider's queue.", labels=["provider", "due"]
    )
    paused = GaugeMetricFamily(
        "invoicer_paused", "1 while the provider account is paused.", labels=["provider", "reason"]
    )
    slots = GaugeMetricFamily(
        "invoicer_limiter_slots_reserved",
        "Request slots of the shared limiter already given out ahead of now.",
        labels=["provider"],
    )
    failures = GaugeMetricFamily(
        "invoicer_failure_budget_used",
        "Failed (4xx) requests in the last minute (Stax blocks the IP at 10).",
        labels=["provider"],
    )
    for i, p in enumerate(Provider):
        queued, due, tat, failed = replies[4 * i : 4 * i + 4]
        depth.add_metric([p.value, "now"], int(due))
        depth.add_metric([p.value, "later"], max(0, int(queued) - int(due)))
        pause = await pause_state(ctx.redis, ctx.keys, p, ctx.account(p))
        paused.add_metric(
            [p.value, "" if pause is None else pause.reason[:80]], 0 if pause is None else 1
        )
        rate = ctx.settings.provider(p).rate_per_minute
        reserved = 0.0
        if rate and tat is not None:
            interval_us = 60_000_000 / rate * (1 + SAFETY)
            reserved = max(0.0, (int(text(tat)) - now_us) / interval_us)
        slots.add_metric([p.value], round(reserved, 2))
        failures.add_metric([p.value], int(failed))
    return [depth, paused, slots, failures]


async def _workers(ctx: WebContext, now_ms: int) -> Metric:
    family = GaugeMetricFamily("invoicer_workers", "Worker processes by status.", labels=["status"])
    found = await read_workers(ctx.redis, ctx.keys, now_ms=now_ms)
    for status in ("alive", "dead", "stopped"):
        family.add_metric([status], sum(w.status == status for w in found))
    return family
