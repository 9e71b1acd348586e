"""Helpers for tests that enqueue, and for tests that run worker processes against the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterable, Callable, Iterable
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from jobs.models import Customer, Invoice, LineItem, Provider
from jobs.sources import Record, RecordError
from sandbox.config import DEFAULT_MAAST_KEY, DEFAULT_STAX_KEY
from worker import api
from worker.enqueue import EnqueueReport
from worker.enqueue import enqueue as enqueue_taken
from worker.intake import Intake, Taken, prepared, prepared_async
from worker.keys import Keys
from worker.limits import ProviderLimiter
from worker.settings import ProviderSettings, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
LIMITER_KEYS = Keys("test:")
"""The prefix of the limiter and pause tests."""

LimiterFactory = Callable[..., ProviderLimiter]
"""The `make_limiter` fixture (tests/worker/conftest.py)."""


def worker_env(redis_url: str, sandbox_url: str, **extra: str) -> dict[str, str]:
    """The environment of a worker process pointed at the test Redis and sandbox."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAAST_", "STAX_"))}
    env.update(
        INVOICER_REDIS_URL=redis_url,
        MAAST_BASE_URL=sandbox_url,
        MAAST_API_KEY=DEFAULT_MAAST_KEY,
        STAX_BASE_URL=sandbox_url,
        STAX_API_KEY=DEFAULT_STAX_KEY,
        INVOICER_LEASE_S="2",
        INVOICER_CONNECT_TIMEOUT_S="0.5",
        INVOICER_READ_TIMEOUT_S="0.5",
        INVOICER_BACKOFF_BASE_S="0.05",
        INVOICER_BACKOFF_CAP_S="0.5",
        INVOICER_SHUTDOWN_WAIT_S="5",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    if "INVOICER_LANDING_WINDOW_S" not in extra:
        # The shortest window the settings accept: an invoice in doubt waits
        # it out (lease + window) before it is created again or verified.
        least = float(env["INVOICER_CONNECT_TIMEOUT_S"]) + float(env["INVOICER_READ_TIMEOUT_S"]) + 5
        env["INVOICER_LANDING_WINDOW_S"] = f"{least:g}"
    return env


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "worker", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_all(workers: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    for w in workers:
        try:
            _, err = w.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            w.kill()
            _, err = w.communicate()
            pytest.fail(f"worker did not finish in {timeout_s}s:\n{err.decode()[-3000:]}")
        assert w.returncode == 0, err.decode()[-3000:]


def invoice(number: str, customer: str = "CUST0001", quantity: int = 1) -> Invoice:
    return Invoice(
        number=number,
        customer=Customer(id=customer, first_name="Ada", last_name="Lovelace", email="a@x.io"),
        lines=[
            LineItem(
                description="Consulting", quantity=Decimal(quantity), unit_price=Decimal("12.50")
            )
        ],
        invoice_date=date(2026, 10, 31),
    )


async def enqueue(
    env: dict[str, str], items: list[Invoice | RecordError], provider: Provider
) -> EnqueueReport:
    settings = load_settings(env, env_file=None)
    return await api.enqueue_invoices(
        items, provider=provider, batch=f"e2e-{provider.value}", settings=settings
    )


def settings_of(env: dict[str, str]) -> Settings:
    return load_settings(env, env_file=None)


def any_invoice(invoice: Invoice) -> None:
    """Intake rules that take every invoice the model takes (no provider's rules)."""


async def enqueue_records(
    redis: aioredis.Redis,
    keys: Keys,
    records: Iterable[Record | RecordError] | AsyncIterable[Record | RecordError],
    *,
    provider: Provider,
    account: str = "default",
    batch: str | None = None,
    send: bool = False,
    chunk_size: int = 500,
    on_progress: Callable[[int], None] | None = None,
) -> EnqueueReport:
    """Records through intake and `worker.enqueue.enqueue`, as `invoicer enqueue`
    takes them, but without the provider's rules: these tests are about Redis
    (some park invoices a provider's rules would have kept out)."""
    intake = Intake(provider, account, send, rules=any_invoice)
    items: Iterable[Taken] | AsyncIterable[list[Taken]]
    if isinstance(records, AsyncIterable):
        items = prepared_async(records, intake)
    else:
        items = prepared(records, intake)
    return await enqueue_taken(
        redis, keys, items, intake, batch=batch, chunk_size=chunk_size, on_progress=on_progress
    )


def limiter_settings(
    rate_per_minute: float | None = 600, failed_per_minute: int | None = 8
) -> ProviderSettings:
    """A Stax account with these limits (its base URL is never called)."""
    return ProviderSettings(
        provider=Provider.STAX,
        base_url="http://127.0.0.1:1",
        rate_per_minute=rate_per_minute,
        failed_per_minute=failed_per_minute,
    )


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 1_000.0

    def __call__(self) -> float:
        return self.now_s
