"""The runner's outcome table, against real Redis, a real ledger and limiter.

Only the provider is fake (`tests/fakes.py`): each test enqueues an invoice
the way `invoicer enqueue` does, runs `create_invoice_job` as arq would (the
record's job id, a try number), and checks the three things the runner
decides: what arq is told (a result or `Retry`), the ledger record, and the
dead-letter entry. No worker process, no background loops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq import Retry
from typer.testing import CliRunner

from jobs.errors import (
    ConfigurationError,
    FieldError,
    InvoiceConflict,
    InvoiceInvalid,
    InvoiceRejected,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
)
from jobs.models import Customer, Invoice, InvoiceReceipt, LineItem, Provider
from jobs.sources import Record
from tests.fakes import OK, FakeProvider, Landed, Outcome
from tests.worker.support import enqueue_records
from worker.cli import app
from worker.dead_letter import DeadLetter
from worker.dlq import DeadLetters
from worker.keys import Keys, invoice_key
from worker.ledger import Ledger, LedgerRecord, State
from worker.limits import ProviderLimiter
from worker.pauses import PauseState, pause_provider, pause_state
from worker.refused import refused_jobs
from worker.retry_policy import PAUSE_RECHECK_S
from worker.runner import JobResult, create_invoice_job
from worker.runtime import Runtime
from worker.settings import Settings, load_settings

PREFIX = "rt:"
MAX_ATTEMPTS = 3
BACKOFF_BASE_S = 1.0
KEY = "maast:INV-1"


def make_invoice(number: str = "INV-1", *, send: bool = False, price: str = "10.00") -> Invoice:
    return Invoice(
        number=number,
        customer=Customer(id="cust1"),
        lines=[LineItem(description="Widget", quantity=Decimal(1), unit_price=Decimal(price))],
        send=send,
    )


def runner_settings() -> Settings:
    return load_settings(
        {
            "INVOICER_REDIS_PREFIX": PREFIX,
            "INVOICER_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "INVOICER_BACKOFF_BASE_S": str(BACKOFF_BASE_S),
            "INVOICER_BACKOFF_CAP_S": "10",
            "MAAST_API_KEY": "test-key",
            "STAX_API_KEY": "test-key",
            "STAX_RATE_PER_MINUTE": "60000",  # a real limiter, but no waiting in tests
        },
        env_file=None,
    )


@dataclass
class Rig:
    """A hand-built `Runtime` with a fake Maast, and helpers to drive one invoice."""

    runtime: Runtime
    provider: FakeProvider
    tries: dict[str, int] = field(default_factory=dict)

    @property
    def ledger(self) -> Ledger:
        return self.runtime.ledger

    async def enqueue(self, invoice: Invoice) -> str:
        """Enqueue as `invoicer enqueue` does; returns the invoice key."""
        report = await enqueue_records(
            self.runtime.redis,
            self.runtime.keys,
            [Record(line=2, invoice=invoice)],
            provider=self.provider.provider,
        )
        assert report.accepted == 1, report
        return invoice_key(self.provider.provider, "default", invoice.number)

    async def record(self, key: str = KEY) -> LedgerRecord:
        record = await self.ledger.get(key)
        assert record is not None
        return record

    async def run(self, key: str = KEY, *, job_id: str | None = None) -> JobResult:
        """One pick-up of the invoice's current job, as arq makes it."""
        job_id = job_id or (await self.record(key)).job_id
        self.tries[job_id] = self.tries.get(job_id, 0) + 1
        ctx: dict[str, Any] = {"runtime": self.runtime, "job_id": job_id}
        ctx["job_try"] = self.tries[job_id]
        return await create_invoice_job(ctx, key)

    async def retry(self, key: str = KEY) -> float:
        """Run once, expecting arq's `Retry`; returns its delay in seconds."""
        with pytest.raises(Retry) as caught:
            await self.run(key)
        defer_ms = caught.value.defer_score
        assert defer_ms is not None, "Retry without a delay: arq would retry at once"
        return defer_ms / 1000

    async def pass_landing_window(self, key: str = KEY) -> None:
        """As if the record's landing window (and verification time) were over."""
        ledger_key = self.runtime.keys.ledger(key)
        past = await server_ms(self) - 1
        for name in ("landing_until_ms", "verify_after_ms"):
            if await self.runtime.redis.hexists(ledger_key, name):  # type: ignore[misc]
                await self.runtime.redis.hset(ledger_key, name, str(past))  # type: ignore[misc]

    async def dead_letter(self, key: str = KEY) -> DeadLetter:
        entry = await DeadLetters(self.runtime.redis, self.runtime.keys).get(key)
        assert entry is not None
        return entry

    async def paused(self) -> PauseState | None:
        r = self.runtime
        return await pause_state(r.redis, r.keys, self.provider.provider, "default")


async def server_ms(rig: Rig) -> int:
    """The Redis server's time (the ledger's clock), in ms."""
    seconds, micros = await rig.runtime.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def build_rig(redis: aioredis.Redis, name: Provider) -> Rig:
    """A `Runtime` built by hand: real ledger and limiter, fake provider, no loops."""
    settings = runner_settings()
    keys = Keys(settings.redis_prefix)
    provider = FakeProvider(name)
    runtime = Runtime(
        settings=settings,
        redis=redis,
        keys=keys,
        ledger=Ledger(
            redis, keys, lease_s=settings.lease_s, landing_window_s=settings.landing_window_s
        ),
        providers={name: provider},
        limiters={name: ProviderLimiter(redis, keys, settings.provider(name))},
    )
    return Rig(runtime=runtime, provider=provider)


@pytest.fixture
async def rig(redis_client: aioredis.Redis) -> AsyncIterator[Rig]:
    """Maast: no rate limit, so the claim also reads the pause flag."""
    rig = build_rig(redis_client, Provider.MAAST)
    yield rig
    assert not rig.runtime.holding, "a job kept holding its entry after it ended"


# -- the outcome table ---------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the runner's outcome table (see worker/runner.py)."""

    create: Outcome
    """What the provider does with the create request."""
    state: State
    failures: int
    outcome: str | None = None
    """The job's result; `None`: arq is told `Retry`."""
    defer_s: tuple[float, float] = (0.0, 0.0)
    """Bounds of the `Retry` delay."""
    paused: bool = False
    dead_reason: str | None = None


REJECTED = InvoiceRejected(
    "customer unknown",
    status=422,
    code="2",
    field_errors=(FieldError("customer.id", "unknown"),),
)
BACKOFF_1 = (0.0, BACKOFF_BASE_S * 2)
"""Full jitter after the first failure: uniform in [0, base * 2**1]."""

TABLE = {
    "success": Row(OK, State.CREATED, 0, outcome="created"),
    "rate_limited_429": Row(
        RateLimited("slow down", retry_after_s=7, status=429),
        State.QUEUED,
        0,
        defer_s=(7, 7 + BACKOFF_BASE_S),  # never sooner, jittered (worker.retry_policy)
        paused=True,
    ),
    "configuration": Row(
        ConfigurationError("API key refused", status=401),
        State.QUEUED,
        0,
        defer_s=(PAUSE_RECHECK_S, PAUSE_RECHECK_S),
        paused=True,
    ),
    "outcome_unknown": Row(OutcomeUnknown("read timeout"), State.IN_DOUBT, 1, defer_s=BACKOFF_1),
    "outcome_unknown_landed": Row(Landed(), State.IN_DOUBT, 1, defer_s=BACKOFF_1),
    "unavailable": Row(ProviderUnavailable("503", status=503), State.QUEUED, 1, defer_s=BACKOFF_1),
    "rejected": Row(REJECTED, State.REJECTED, 0, outcome="dead_lettered", dead_reason="rejected"),
    "conflict": Row(
        InvoiceConflict("number in use", status=409),
        State.REJECTED,
        0,
        outcome="dead_lettered",
        dead_reason="conflict",
    ),
}


@pytest.mark.parametrize("row", TABLE.values(), ids=TABLE.keys())
async def test_outcome_table(rig: Rig, row: Row) -> None:
    # Given a queued invoice and a provider that answers its create as the row says
    await rig.enqueue(make_invoice())
    rig.provider.script("create", row.create)
    # When the job runs once
    if row.outcome is None:
        delay_s = await rig.retry()
        low, high = row.defer_s
        assert low <= delay_s <= high
    else:
        result = await rig.run()
        assert (result["outcome"], result["invoice_key"]) == (row.outcome, KEY)
    # Then the ledger, the pause flag and the dead-letter queue say what the row says
    record = await rig.record()
    assert (record.state, record.failures) == (row.state, row.failures)
    assert rig.provider.calls_of("create") == 1
    assert (await rig.paused() is not None) == row.paused
    assert record.dead_lettered == (row.dead_reason is not None)
    if row.dead_reason is not None:
        assert (await rig.dead_letter()).reason == row.dead_reason
    # and the lease is given back, so the next pick-up is not refused as busy
    assert (await rig.runtime.redis.zscore(rig.runtime.keys.leases(), KEY)) is None


async def test_success_stores_the_receipt(rig: Rig) -> None:
    await rig.enqueue(make_invoice())
    await rig.run()
    record = await rig.record()
    assert record.receipt is not None
    assert record.receipt.provider_id == rig.provider.held["INV-1"][0].provider_id
    assert record.receipt.total == Decimal("10.00")


async def test_send_is_part_of_the_job(rig: Rig) -> None:
    await rig.enqueue(make_invoice(send=True))
    assert (await rig.run())["outcome"] == "sent"
    assert (await rig.record()).state is State.SENT
    assert rig.provider.sends == {"INV-1": 1}


async def test_rejection_dead_letters_with_the_field_errors(rig: Rig) -> None:
    await rig.enqueue(make_invoice())
    rig.provider.script("create", REJECTED)
    await rig.run()
    entry = await rig.dead_letter()
    assert (entry.reason, entry.kind, entry.status, entry.code) == (
        "rejected",
        "InvoiceRejected",
        422,
        "2",
    )
    assert entry.field_errors == [FieldError("customer.id", "unknown")]
    assert entry.attempts == 1
    assert entry.payload and Invoice.model_validate_json(entry.payload) == make_invoice()


async def test_local_validation_failure_dead_letters_without_a_request(rig: Rig) -> None:
    await rig.enqueue(make_invoice())
    rig.provider.invalid = InvoiceInvalid("too long", field_errors=(FieldError("number", "x"),))
    assert (await rig.run())["outcome"] == "dead_lettered"
    assert rig.provider.calls_of("create") == 0
    assert (await rig.record()).state is State.REJECTED
    assert (await rig.dead_letter()).reason == "invalid"


async def test_rate_limit_429_does_not_count_against_the_budget(rig: Rig) -> None:
    # Given a provider that says 429 more times than the failure budget allows
    await rig.enqueue(make_invoice())
    for _ in range(MAX_ATTEMPTS + 1):
        rig.provider.script("create", RateLimited("429", retry_after_s=0.001, status=429))
    # When each run is deferred (the pause lasts a millisecond: wait it out)
    for _ in range(MAX_ATTEMPTS + 1):
        await rig.retry()
        record = await rig.record()
        assert (record.state, record.failures, record.dead_lettered) == (State.QUEUED, 0, False)
        await rig.runtime.redis.delete(rig.runtime.keys.pause(Provider.MAAST, "default"))
    # Then the next run creates it
    assert (await rig.run())["outcome"] == "created"


async def test_a_paused_provider_defers_without_any_request(rig: Rig) -> None:
    await rig.enqueue(make_invoice())
    r = rig.runtime
    await pause_provider(r.redis, r.keys, Provider.MAAST, "default", "operator", ttl_s=30)
    delay_s = await rig.retry()
    assert 25 <= delay_s <= 30 + BACKOFF_BASE_S
    assert [kind for kind, _ in rig.provider.calls if kind != "validate"] == []
    record = await rig.record()
    assert (record.state, record.failures) == (State.QUEUED, 0)


async def test_configuration_error_pauses_until_resumed_and_keeps_the_record(rig: Rig) -> None:
    await rig.enqueue(make_invoice())
    rig.provider.script("create", ConfigurationError("401 Unauthorized", status=401))
    await rig.retry()
    pause = await rig.paused()
    assert pause is not None and pause.indefinite
    # the next pick-up sends nothing while paused, and still does not count
    assert await rig.retry() > 0
    assert rig.provider.calls_of("create") == 1
    record = await rig.record()
    assert (record.state, record.failures, record.dead_lettered) == (State.QUEUED, 0, False)


async def test_a_rate_limited_provider_is_paced_and_paused_alike(
    redis_client: aioredis.Redis,
) -> None:
    # Given Stax, whose limiter has a rate (its own pause probe, no claim read)
    rig = build_rig(redis_client, Provider.STAX)
    assert await rig.enqueue(make_invoice()) == "stax:INV-1"
    assert (await rig.run("stax:INV-1"))["outcome"] == "created"
    # When one create is answered 429
    await rig.enqueue(make_invoice("INV-2"))
    rig.provider.script("create", RateLimited("429", retry_after_s=20, status=429))
    assert 20 <= await rig.retry("stax:INV-2") <= 20 + BACKOFF_BASE_S
    # Then the next job is deferred for the pause without a request
    await rig.enqueue(make_invoice("INV-3"))
    assert 15 <= await rig.retry("stax:INV-3") <= 20 + BACKOFF_BASE_S
    assert rig.provider.calls_of("create") == 2
    for key in ("stax:INV-2", "stax:INV-3"):
        record = await rig.record(key)
        assert (record.state, record.failures) == (State.QUEUED, 0)


# -- the retry budget ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "state", "reason"),
    [
        (ProviderUnavailable("503", status=503), State.REJECTED, "exhausted"),
        # it may exist at the provider: a person must look before re-creating
        (OutcomeUnknown("read timeout"), State.IN_DOUBT, "in_doubt"),
    ],
    ids=["unavailable", "outcome_unknown"],
)
async def test_spent_budget_dead_letters(
    rig: Rig, error: ProviderUnavailable | OutcomeUnknown, state: State, reason: str
) -> None:
    # Given a provider that keeps failing transiently
    await rig.enqueue(make_invoice())
    rig.provider.script("create", *[error] * MAX_ATTEMPTS)
    # When the job has used all but one attempt (each in-doubt try waits
    # out its landing window: a lookup before then proves nothing)
    for failures in range(1, MAX_ATTEMPTS):
        await rig.retry()
        assert (await rig.record()).failures == failures
        await rig.pass_landing_window()
    # Then the last one dead-letters instead of asking arq to retry
    assert (await rig.run())["outcome"] == "dead_lettered"
    record = await rig.record()
    assert record.state is state and record.dead_lettered
    entry = await rig.dead_letter()
    assert (entry.reason, entry.kind, entry.attempts) == (reason, type(error).__name__, 3)
    # and nothing more happens to it
    assert (await rig.run())["outcome"] == "nothing_to_do"
    assert rig.provider.calls_of("create") == MAX_ATTEMPTS


async def test_backoff_grows_with_failures(rig: Rig) -> None:
    await rig.enqueue(make_invoice())
    rig.provider.script("create", *[ProviderUnavailable("503", status=503)] * 2)
    first, second = await rig.retry(), await rig.retry()
    assert 0 <= first <= BACKOFF_BASE_S * 2
    assert 0 <= second <= BACKOFF_BASE_S * 4


# -- exactly once across runs -----------------------------------------------------------


async def test_second_run_after_success_makes_no_provider_call(rig: Rig) -> None:
    await rig.enqueue(make_invoice())
    assert (await rig.run())["outcome"] == "created"
    calls = list(rig.provider.calls)
    assert (await rig.run())["outcome"] == "nothing_to_do"
    assert rig.provider.calls == calls
    assert rig.provider.count("INV-1") == 1


async def test_landed_create_is_found_not_created_again(rig: Rig) -> None:
    # Given a create that landed although the worker saw a read timeout
    await rig.enqueue(make_invoice())
    rig.provider.script("create", Landed())
    await rig.retry()
    assert (await rig.record()).state is State.IN_DOUBT
    # When the job runs again: it looks the invoice up and adopts it, unverified
    await rig.retry()
    record = await rig.record()
    assert record.state is State.CREATED and record.unverified
    assert record.verify_after_ms == record.landing_until_ms
    # and once its landing window has passed it is looked up again: verified
    await rig.pass_landing_window()
    assert (await rig.run())["outcome"] == "created"
    # Then one invoice at the provider, never created twice
    assert [k for k, _ in rig.provider.calls] == ["validate", "create", "find_all", "find_all"]
    assert rig.provider.count("INV-1") == 1
    record = await rig.record()
    assert record.receipt is not None and not record.unverified
    assert record.receipt.provider_id == rig.provider.held["INV-1"][0].provider_id
    assert (await rig.run())["outcome"] == "nothing_to_do"


async def test_in_doubt_not_found_waits_out_the_landing_window_then_creates(rig: Rig) -> None:
    # Given a create whose outcome is unknown (it did not land)
    await rig.enqueue(make_invoice())
    rig.provider.script("create", OutcomeUnknown("read timeout"))
    await rig.retry()
    landing_until_ms = (await rig.record()).landing_until_ms
    # When the job runs again at once: it looks up, finds nothing, and waits
    # (no failure counted) until the request could no longer land
    delay_s = await rig.retry()
    now_ms = await server_ms(rig)
    lease_s, window_s = rig.runtime.settings.lease_s, rig.runtime.settings.landing_window_s
    assert landing_until_ms - 1000 <= now_ms + delay_s * 1000 <= landing_until_ms + 2000
    assert landing_until_ms > now_ms + (window_s + lease_s - 5) * 1000
    record = await rig.record()
    assert (record.state, record.failures) == (State.IN_DOUBT, 1)
    assert "waiting" in [e["event"] for e in await rig.ledger.history(KEY)]
    # Then, the window passed, it looks up again and only then creates
    # (unverified: verified once the new create's own window has passed)
    await rig.pass_landing_window()
    await rig.retry()
    assert (await rig.record()).unverified
    await rig.pass_landing_window()
    assert (await rig.run())["outcome"] == "created"
    assert [k for k, _ in rig.provider.calls] == [
        "validate",
        "create",
        "find_all",
        "find_all",
        "validate",
        "create",
        "find_all",
    ]
    assert rig.provider.count("INV-1") == 1


async def test_a_send_that_may_have_landed_is_looked_up_not_repeated(rig: Rig) -> None:
    await rig.enqueue(make_invoice(send=True))
    rig.provider.script("send", Landed())
    await rig.retry()
    record = await rig.record()
    assert (record.state, record.send_started, record.failures) == (State.CREATED, True, 1)
    assert (await rig.run())["outcome"] == "sent"
    assert rig.provider.sends == {"INV-1": 1}
    assert rig.provider.calls_of("create") == 1
    assert (await rig.record()).state is State.SENT


async def test_stale_job_of_a_superseded_generation_does_nothing(rig: Rig) -> None:
    # Given an invoice rejected, then enqueued again (a new generation and job id)
    await rig.enqueue(make_invoice())
    rig.provider.script("create", REJECTED)
    await rig.run()
    stale_job_id = (await rig.record()).job_id
    await rig.enqueue(make_invoice(price="12.00"))
    fresh = await rig.record()
    assert fresh.job_id != stale_job_id and fresh.state is State.QUEUED
    calls = list(rig.provider.calls)
    # When the old job runs (arq still had it), nothing happens
    assert (await rig.run(job_id=stale_job_id))["outcome"] == "nothing_to_do"
    assert rig.provider.calls == calls
    # and the new one creates the corrected invoice
    assert (await rig.run())["outcome"] == "created"
    assert (await rig.record()).receipt is not None
    assert rig.provider.held["INV-1"][0].total == Decimal("12.00")


async def test_a_job_for_an_unknown_invoice_is_dropped_and_said_once(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await rig.run("maast:NOPE", job_id="rt:maast:NOPE#1"))["outcome"] == "nothing_to_do"
    assert rig.provider.calls == []
    (refused,) = await refused_jobs(rig.runtime.redis, rig.runtime.keys)
    assert (refused.job_id, refused.invoice_key) == ("rt:maast:NOPE#1", "maast:NOPE")
    assert "no ledger record for maast:NOPE" in refused.reason
    (line,) = [r.getMessage() for r in caplog.records if "refused job" in r.getMessage()]
    assert "rt:maast:NOPE#1" in line and "no ledger record" in line


class BuggyProvider(FakeProvider):
    """A provider whose create fails with something that is not an `InvoiceError`."""

    async def create(self, invoice: Invoice, *, send_now: bool = False) -> InvoiceReceipt:
        await super().create(invoice, send_now=send_now)  # it may even have landed
        raise KeyError("provider_id")


async def test_a_bug_is_raised_and_the_invoice_is_not_stranded(rig: Rig) -> None:
    buggy = BuggyProvider(Provider.MAAST)
    rig.runtime.providers[Provider.MAAST] = buggy
    await rig.enqueue(make_invoice())
    # arq must see the bug (Sentry reports it) ...
    with pytest.raises(KeyError):
        await rig.run()
    # ... and the invoice, which may exist at the provider, is parked for a person
    record = await rig.record()
    assert record.dead_lettered and record.state is State.IN_DOUBT


SECRET = "sk-live-0123456789abcdef"
"""What a leak would show: the ASCII part of a key pasted with a curly quote."""


class HeaderBugProvider(FakeProvider):
    """Fails the way httpx did with a curly quote in the key: an exception
    whose text and repr hold the Authorization header."""

    async def create(self, invoice: Invoice, *, send_now: bool = False) -> InvoiceReceipt:
        await super().create(invoice, send_now=send_now)
        f"Bearer {SECRET}\u2019".encode("ascii")
        raise AssertionError("unreachable")


async def test_a_bug_holding_a_header_is_parked_without_its_text(
    rig: Rig, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    rig.runtime.providers[Provider.MAAST] = HeaderBugProvider(Provider.MAAST)
    await rig.enqueue(make_invoice())
    with pytest.raises(UnicodeEncodeError):
        await rig.run()
    entry = await rig.dead_letter()
    # in doubt: the create may have left before the bug (a person looks first)
    assert entry.reason == "in_doubt" and entry.kind == "UnicodeEncodeError"
    assert entry.message.startswith("UnicodeEncodeError in ") and "test_runner.py" in entry.message
    record = await rig.record()
    assert record.error is not None and SECRET not in record.error.message
    # what people read: the log, `dlq list --json`, `dlq show`, the report
    assert SECRET not in caplog.text
    env = {"INVOICER_REDIS_URL": redis_url, "INVOICER_REDIS_PREFIX": PREFIX, "COLUMNS": "200"}
    for args in (["dlq", "list", "--json"], ["dlq", "show", KEY], ["dlq", "show", KEY, "--json"]):
        result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)
        assert result.exit_code == 0, result.output
        assert KEY in result.stdout and SECRET not in result.output
    raw = await rig.runtime.redis.hgetall(rig.runtime.keys.dead_letter(KEY))  # type: ignore[misc]
    assert all(SECRET.encode() not in value for value in raw.values())
