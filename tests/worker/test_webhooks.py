"""Result webhooks: signed, announced once, retried with backoff after a 500, every attempt kept."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from jobs.models import InvoiceReceipt, Provider
from worker import api
from worker.keys import Keys
from worker.ledger import Ledger
from worker.settings import Settings, load_settings
from worker.webhooks.dispatcher import Dispatcher
from worker.webhooks.signing import signature, verify
from worker.webhooks.subscriptions import attempts, subscribe

from .support import invoice

SECRET = "whsec-test-0123456789abcdef"


@dataclass
class Receiver:
    """A webhook receiver as a user would write it: verify, refuse replays, answer."""

    url: str = ""
    answers: list[int] = field(default_factory=list)
    seen: list[dict[str, object]] = field(default_factory=list)
    bad_signatures: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get("Invoicer-Signature", "")
        parts = dict(p.split("=", 1) for p in header.split(","))
        expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
        fresh = abs(time.time() - int(parts["t"])) < 300
        if not (fresh and hmac.compare_digest(expected.hexdigest(), parts["v1"])):
            self.bad_signatures += 1
            return web.Response(status=400)
        self.seen.append(json.loads(body))
        return web.Response(status=self.answers.pop(0) if self.answers else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    r.url = f"http://127.0.0.1:{port}/hook"
    yield r
    await runner.cleanup()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return load_settings({"INVOICER_REDIS_URL": redis_url}, env_file=None)


def test_signature_round_trip_and_replay() -> None:
    body = b'{"a": 1}'
    header = signature(SECRET, body, at=1_000_000)
    assert verify(SECRET, body, header, now=1_000_010)
    assert not verify(SECRET, body + b" ", header, now=1_000_010)
    assert not verify("other-secret-000000000", body, header, now=1_000_010)
    assert not verify(SECRET, body, header, now=1_000_000 + 301)  # a replay, later
    assert not verify(SECRET, body, "garbage", now=1_000_010)


async def _finish_all(redis: aioredis.Redis, keys: Keys, iks: list[str]) -> None:
    ledger = Ledger(redis, keys)
    for ik in iks:
        held = await ledger.claim(ik, keys.job_id(ik, 1), early_sending=True)
        assert held is not None
        number = ik.partition(":")[2]
        await held.mark_created(
            InvoiceReceipt(
                provider=Provider.MAAST,
                provider_id=f"p-{number}",
                invoice_number=number,
                status="SAVED",
            )
        )
        await held.release()


async def test_completion_and_outcomes_are_delivered_signed_and_retried_after_500(
    redis_client: aioredis.Redis, settings: Settings, receiver: Receiver
) -> None:
    keys = Keys(settings.redis_prefix)
    report = await api.enqueue_invoices(
        [invoice("W-1"), invoice("W-2")],
        provider=Provider.MAAST,
        batch="hooks",
        settings=settings,
        redis=redis_client,
    )
    await subscribe(redis_client, keys, report.batch_id, receiver.url, each=True)
    dispatcher = Dispatcher(redis_client, keys, SECRET, base_delay_s=0.05, max_delay_s=0.2)
    other = Dispatcher(redis_client, keys, SECRET)  # a second worker process: must not double up
    try:
        await dispatcher.tick()  # nothing finished yet: nothing sent
        assert receiver.seen == []
        receiver.answers = [500, 500]  # the first two deliveries fail
        await _finish_all(redis_client, keys, ["maast:W-1", "maast:W-2"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await dispatcher.tick()
            if len(receiver.seen) >= 5 and not await redis_client.zcard(keys.webhook_outbox()):
                break
            await other.tick()
            await asyncio.sleep(0.05)
    finally:
        await dispatcher.aclose()
        await other.aclose()
    assert receiver.bad_signatures == 0
    types = [e["type"] for e in receiver.seen]
    delivered = {e["id"]: e for e in receiver.seen}
    assert sorted(str(e["type"]) for e in delivered.values()) == [
        "batch.completed",
        "invoice.created",
        "invoice.created",
    ]
    assert len(types) == 5  # two 500s, then each of the three delivered once
    completed = next(e for e in delivered.values() if e["type"] == "batch.completed")
    assert completed["data"]["counts"]["created"] == 2  # type: ignore[index]
    recorded = await attempts(redis_client, keys, report.batch_id)
    outcomes = [a["outcome"] for a in recorded]
    assert outcomes.count("retrying") == 2 and outcomes.count("delivered") == 3
    assert all(a["status"] in (200, 500) for a in recorded)
    assert await redis_client.zcard(keys.webhook_outbox()) == 0


async def test_a_receiver_that_never_answers_2xx_is_given_up_after_the_day(
    redis_client: aioredis.Redis, settings: Settings, receiver: Receiver
) -> None:
    keys = Keys(settings.redis_prefix)
    report = await api.enqueue_invoices(
        [invoice("G-1")], provider=Provider.MAAST, settings=settings, redis=redis_client
    )
    await subscribe(redis_client, keys, report.batch_id, receiver.url, each=False)
    await _finish_all(redis_client, keys, ["maast:G-1"])
    receiver.answers = [503] * 10
    # "a day" shortened to 0.3 s for the test: the rule is the same
    dispatcher = Dispatcher(redis_client, keys, SECRET, base_delay_s=0.05, give_up_s=0.3)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await dispatcher.tick()
            recorded = await attempts(redis_client, keys, report.batch_id)
            if recorded and recorded[-1]["outcome"] == "gave_up":
                break
            await asyncio.sleep(0.05)
    finally:
        await dispatcher.aclose()
    assert recorded[-1]["outcome"] == "gave_up" and len(recorded) >= 2
    assert await redis_client.zcard(keys.webhook_outbox()) == 0
