"""`read_status` and `invoicer status` against a real Redis, with state built
through the ledger's own API (enqueue, claim, mark_*)."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
import typer
from typer.testing import CliRunner

from jobs.errors import ErrorInfo, FieldError
from jobs.models import Customer, Invoice, InvoiceReceipt, LineItem, Provider
from jobs.sources import Record
from tests.worker.support import enqueue_records
from worker.cli import status as status_cli
from worker.held import HeldEntry
from worker.keys import Keys, invoice_key
from worker.ledger import Ledger, State
from worker.pauses import pause_provider
from worker.settings import load_settings
from worker.status import StatusSnapshot, UnknownBatch, read_status

KEYS = Keys()
PROVIDERS = [Provider.MAAST, Provider.STAX]
ACCOUNTS = {Provider.MAAST: "default", Provider.STAX: "default"}
REJECTED = ErrorInfo(
    kind="InvoiceRejected",
    reason="rejected",
    message="customer not found",
    status=422,
    code="2",
    field_errors=(FieldError("customer.id", "unknown"),),
)


def invoice(number: str, price: str = "10.00") -> Invoice:
    return Invoice(
        number=number,
        customer=Customer(id="cust1"),
        lines=[LineItem(description="Consulting", quantity=Decimal(2), unit_price=Decimal(price))],
    )


async def enqueue(
    redis: aioredis.Redis, numbers: list[str], provider: Provider = Provider.MAAST
) -> str:
    records = [Record(line=i + 2, invoice=invoice(n)) for i, n in enumerate(numbers)]
    report = await enqueue_records(
        redis, KEYS, records, provider=provider, batch=f"test-{provider.value}"
    )
    assert report.accepted == len(numbers)
    return report.batch_id


async def hold(ledger: Ledger, provider: Provider, number: str) -> HeldEntry:
    key = invoice_key(provider, "default", number)
    record = await ledger.get(key)
    assert record is not None
    held = await ledger.claim(key, record.job_id)
    assert held is not None
    return held


def receipt(provider: Provider, number: str) -> InvoiceReceipt:
    return InvoiceReceipt(
        provider=provider, provider_id=f"p-{number}", invoice_number=number, status="SAVED"
    )


async def one_of_each(redis: aioredis.Redis) -> str:
    """A batch of five maast invoices: created, in_doubt, rejected, sending, queued."""
    batch = await enqueue(redis, ["A1", "A2", "A3", "A4", "A5"])
    ledger = Ledger(redis, KEYS)
    created = await hold(ledger, Provider.MAAST, "A1")
    await created.mark_sending()
    await created.mark_created(receipt(Provider.MAAST, "A1"))
    doubt = await hold(ledger, Provider.MAAST, "A2")
    await doubt.mark_sending()
    await doubt.mark_in_doubt(
        ErrorInfo(kind="OutcomeUnknown", reason="outcome_unknown", message="t")
    )
    rejected = await hold(ledger, Provider.MAAST, "A3")
    await rejected.mark_sending()
    await rejected.dead_letter(REJECTED, attempts=1)
    sending = await hold(ledger, Provider.MAAST, "A4")
    await sending.mark_sending()
    return batch


async def snapshot(
    redis: aioredis.Redis, batch: str | None, now_ms: int | None = None
) -> StatusSnapshot:
    return await read_status(
        redis, KEYS, batch=batch, providers=PROVIDERS, accounts=ACCOUNTS, now_ms=now_ms
    )


async def test_batch_counts_rate_and_eta(redis_client: aioredis.Redis) -> None:
    batch = await one_of_each(redis_client)
    snap = await snapshot(redis_client, batch)
    assert {s.value: n for s, n in snap.counts.items()} == {
        "queued": 1,
        "sending": 1,
        "in_doubt": 1,
        "created": 1,
        "sent": 0,
        "rejected": 1,
        "discarded": 0,
    }
    assert snap.total == 5
    assert snap.remaining == 3
    assert snap.dead_letters == 1
    # created + rejected finished within the last minute: 2/min, 3 left -> 90 s.
    assert snap.rate_per_minute == 2
    assert snap.eta_s == pytest.approx(90.0)
    assert snap.batch is not None and snap.batch.provider == "maast"


async def test_totals_cover_every_batch_and_batches_stay_apart(
    redis_client: aioredis.Redis,
) -> None:
    first = await one_of_each(redis_client)
    second = await enqueue(redis_client, ["S1", "S2"], Provider.STAX)
    everything = await snapshot(redis_client, None)
    assert everything.total == 7
    assert everything.counts[State.QUEUED] == 3
    assert everything.batch is None
    only_second = await snapshot(redis_client, second)
    assert only_second.total == 2 and only_second.counts[State.QUEUED] == 2
    # The stax batch finished nothing: its rate is stax's, not maast's.
    assert only_second.rate_per_minute == 0 and only_second.eta_s is None
    assert (await snapshot(redis_client, first)).total == 5


async def test_queue_depth_due_versus_deferred(redis_client: aioredis.Redis) -> None:
    await enqueue(redis_client, ["Q1", "Q2", "Q3"])
    now_ms = int(time.time() * 1000)
    # Defer one job by an hour, as a backoff would.
    first_job = KEYS.job_id(invoice_key(Provider.MAAST, "default", "Q1"), 1)
    await redis_client.zadd(KEYS.queue(Provider.MAAST), {first_job: now_ms + 3_600_000})
    maast = (await snapshot(redis_client, None, now_ms + 1000)).providers[0]
    assert (maast.provider, maast.due, maast.deferred) == (Provider.MAAST, 2, 1)
    earlier = (await snapshot(redis_client, None, now_ms - 60_000)).providers[0]
    assert (earlier.due, earlier.deferred) == (0, 3)


async def test_rate_counts_only_the_last_minute(redis_client: aioredis.Redis) -> None:
    await one_of_each(redis_client)
    later = await snapshot(redis_client, None, int(time.time() * 1000) + 61_000)
    assert later.rate_per_minute == 0
    assert later.eta_s is None


async def test_pause_state_is_shown(redis_client: aioredis.Redis) -> None:
    await pause_provider(redis_client, KEYS, Provider.STAX, "default", "401: key refused")
    await pause_provider(redis_client, KEYS, Provider.MAAST, "default", "429", ttl_s=30)
    maast, stax = (await snapshot(redis_client, None)).providers
    assert stax.paused and stax.paused_reason == "401: key refused"
    assert stax.paused_until_ms is None
    assert maast.paused and maast.paused_until_ms is not None


async def test_unknown_batch(redis_client: aioredis.Redis) -> None:
    with pytest.raises(UnknownBatch):
        await snapshot(redis_client, "no-such-batch")


async def test_empty_redis_is_all_zero(redis_client: aioredis.Redis) -> None:
    snap = await snapshot(redis_client, None)
    assert snap.total == 0 and snap.remaining == 0 and snap.eta_s == 0.0
    data = snap.as_dict()
    assert data["counts"] == {s.value: 0 for s in State}


def app() -> typer.Typer:
    cli = typer.Typer()
    status_cli.register(cli)
    return cli


async def invoke(redis_url: str, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    env = {"INVOICER_REDIS_URL": redis_url, "COLUMNS": "200"}
    # The command runs its own event loop: give it a thread of its own.
    result = await asyncio.to_thread(runner.invoke, app(), list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


async def test_cli_json_has_the_documented_fields(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    batch = await one_of_each(redis_client)
    code, stdout, _ = await invoke(redis_url, "status", "--batch", batch, "--json")
    assert code == 0
    data = json.loads(stdout)
    assert set(data) == {
        "at_ms",
        "batch",
        "counts",
        "total",
        "remaining",
        "dead_letters",
        "unverified",
        "voided",
        "duplicates_found",
        "duplicates_open",
        "rate_per_minute",
        "eta_s",
        "providers",
        "refused_jobs",
    }
    assert data["counts"]["in_doubt"] == 1 and data["eta_s"] == 90.0
    assert data["batch"]["id"] == batch
    assert data["providers"][0]["provider"] == "maast"


async def test_cli_table_and_unknown_batch(redis_client: aioredis.Redis, redis_url: str) -> None:
    await one_of_each(redis_client)
    code, stdout, _ = await invoke(redis_url, "status")
    assert code == 0
    assert "in_doubt" in stdout and "ETA 1m30s" in stdout and "dead letters 1" in stdout
    code, _, stderr = await invoke(redis_url, "status", "--batch", "nope")
    assert code == 2 and "unknown batch" in stderr


async def test_watch_refreshes(
    redis_client: aioredis.Redis,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await one_of_each(redis_client)
    s = load_settings({"INVOICER_REDIS_URL": redis_url}, env_file=None)
    monkeypatch.setattr(status_cli, "REFRESH_S", 0.01)
    await status_cli.watch_status(s, None, as_json=True, iterations=2)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["total"] for line in lines] == [5, 5]
    await status_cli.watch_status(s, None, as_json=False, iterations=1)
    assert "in_doubt" in capsys.readouterr().out


def test_format_eta() -> None:
    assert status_cli.format_eta(None) == "-"
    assert status_cli.format_eta(0) == "done"
    assert status_cli.format_eta(12.4) == "12s"
    assert status_cli.format_eta(250) == "4m10s"
    assert status_cli.format_eta(3720) == "1h02m"


async def finish(redis: aioredis.Redis, provider: Provider, numbers: list[str]) -> None:
    ledger = Ledger(redis, KEYS)
    for number in numbers:
        held = await hold(ledger, provider, number)
        await held.mark_sending()
        await held.mark_created(receipt(provider, number))


async def test_each_provider_is_timed_at_its_own_rate(redis_client: aioredis.Redis) -> None:
    # 6 Maast invoices, 4 finished this minute; 30 Stax invoices, none finished.
    await enqueue(redis_client, [f"M{i}" for i in range(6)])
    await enqueue(redis_client, [f"S{i}" for i in range(30)], Provider.STAX)
    await finish(redis_client, Provider.MAAST, ["M0", "M1", "M2", "M3"])

    snap = await snapshot(redis_client, None)

    maast, stax = snap.providers
    assert (maast.remaining, maast.finished_last_minute) == (2, 4)
    assert maast.eta_s == pytest.approx(30.0)  # 2 left at 4/min: Maast's rate only
    assert (stax.remaining, stax.finished_last_minute, stax.eta_s) == (30, 0, None)
    # Not 32 invoices at Maast's 4/min (8 min): Stax has not moved, nobody can tell.
    assert snap.eta_s is None and snap.held_up == [stax]
    assert stax.as_dict()["eta_s"] is None
    await finish(redis_client, Provider.STAX, ["S0", "S1", "S2"])
    moving = await snapshot(redis_client, None)
    # Side by side: the slowest account's ETA (27 left at 3/min = 9 min).
    assert moving.eta_s == pytest.approx(540.0)


async def test_each_account_of_a_provider_has_its_own_rate(redis_client: aioredis.Redis) -> None:
    eu = [Record(line=2, invoice=invoice("EU-1")), Record(line=3, invoice=invoice("EU-2"))]
    await enqueue_records(redis_client, KEYS, eu, provider=Provider.MAAST, account="eu")
    await enqueue(redis_client, ["D1", "D2"])
    await finish(redis_client, Provider.MAAST, ["D1", "D2"])

    only_eu = await read_status(
        redis_client,
        KEYS,
        batch=None,
        providers=[Provider.MAAST],
        accounts={Provider.MAAST: "eu"},
    )

    (row,) = only_eu.providers
    assert (row.account, row.remaining, row.finished_last_minute, row.eta_s) == ("eu", 2, 0, None)


async def test_a_paused_account_shows_no_eta(redis_client: aioredis.Redis) -> None:
    batch = await enqueue(redis_client, [f"P{i}" for i in range(4)], Provider.STAX)
    await finish(redis_client, Provider.STAX, ["P0", "P1"])
    await pause_provider(redis_client, KEYS, Provider.STAX, "default", "401: key refused")

    snap = await snapshot(redis_client, batch)

    stax = snap.providers[1]
    assert stax.paused and stax.finished_last_minute == 2 and stax.eta_s is None
    assert snap.eta_s is None and snap.held_up == [stax]
    view = status_cli._summary(snap).plain
    assert "ETA - (stax paused)" in view


async def test_an_empty_redis_never_reads_as_done(redis_client: aioredis.Redis) -> None:
    view = status_cli._summary(await snapshot(redis_client, None)).plain
    assert "nothing enqueued here yet" in view and "done" not in view
