"""Cancelling a batch: queued invoices discarded, in-flight ones finish, races decided."""

from __future__ import annotations

import asyncio
import io
import random

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from jobs.errors import ErrorInfo
from jobs.models import InvoiceReceipt, Provider
from worker import api
from worker.cancel import cancel_batch
from worker.cli import app
from worker.held import HeldEntry, LeaseLost
from worker.keys import ARQ_JOB, Keys
from worker.ledger import Ledger, State
from worker.report import write_report
from worker.settings import Settings, load_settings
from worker.status import UnknownBatch, read_status

from .support import invoice

UNKNOWN = ErrorInfo(kind="OutcomeUnknown", reason="outcome_unknown", message="read timeout")


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return load_settings({"INVOICER_REDIS_URL": redis_url}, env_file=None)


async def _batch(
    redis: aioredis.Redis, settings: Settings, count: int, *, send: bool = False
) -> tuple[str, list[str]]:
    items = [invoice(f"C-{i:04d}") for i in range(count)]
    report = await api.enqueue_invoices(
        items, provider=Provider.MAAST, batch="mistake", send=send, settings=settings, redis=redis
    )
    assert report.accepted == count
    return report.batch_id, [f"maast:C-{i:04d}" for i in range(count)]


async def _claim(ledger: Ledger, keys: Keys, ik: str) -> HeldEntry | None:
    return await ledger.claim(ik, keys.job_id(ik, 1), early_sending=True)


def _receipt(number: str) -> InvoiceReceipt:
    return InvoiceReceipt(
        provider=Provider.MAAST, provider_id=f"p-{number}", invoice_number=number, status="SAVED"
    )


async def test_queued_invoices_are_discarded_and_held_ones_finish(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.redis_prefix)
    ledger = Ledger(redis_client, keys)
    batch, iks = await _batch(redis_client, settings, 5)
    held = await _claim(ledger, keys, iks[0])
    assert held is not None

    report = await cancel_batch(redis_client, keys, batch)

    assert report.counts["cancelled"] == 4 and report.counts["in_flight"] == 1
    assert await redis_client.zcard(keys.queue(Provider.MAAST)) == 1  # only the held one's job
    assert not await redis_client.exists(ARQ_JOB + keys.job_id(iks[1], 1))
    for ik in iks[1:]:
        record = await ledger.get(ik)
        assert record is not None and record.state is State.DISCARDED
        assert record.error is not None and record.error.reason == "cancelled"
        assert await _claim(ledger, keys, ik) is None  # a late claim does nothing
    # the held one finishes normally
    await held.mark_created(_receipt("C-0000"))
    await held.release()
    snap = await read_status(
        redis_client, keys, batch=batch, providers=[Provider.MAAST], accounts={}
    )
    assert snap.counts[State.DISCARDED] == 4 and snap.counts[State.CREATED] == 1
    assert snap.remaining == 0
    # recorded: the batch hash and the report say so
    info = await redis_client.hgetall(keys.batch(batch))  # type: ignore[misc]
    assert info[b"cancelled"] == b"4" and int(info[b"cancelled_at_ms"]) > 0
    out = io.StringIO()
    await write_report(redis_client, keys, batch, out)
    rows = out.getvalue().splitlines()[1:]
    assert sum("discarded" in r and "cancelled" in r for r in rows) == 4
    # again: idempotent
    again = await cancel_batch(redis_client, keys, batch)
    assert again.counts["cancelled"] == 0 and again.counts["finished"] == 5


async def test_in_doubt_and_drafts_to_send(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.redis_prefix)
    ledger = Ledger(redis_client, keys)
    batch, iks = await _batch(redis_client, settings, 3, send=True)
    doubtful = await _claim(ledger, keys, iks[0])
    assert doubtful is not None
    await doubtful.mark_in_doubt(UNKNOWN)
    await doubtful.release()
    draft = await _claim(ledger, keys, iks[1])
    assert draft is not None
    await draft.mark_created(_receipt("C-0001"))
    await draft.release()

    report = await cancel_batch(redis_client, keys, batch)

    assert report.counts == {
        "cancelled": 1,
        "send_cancelled": 1,
        "in_flight": 0,
        "in_doubt": 1,
        "finished": 0,
        "moved": 0,
        "missing": 0,
    }
    record = await ledger.get(iks[1])
    assert record is not None and record.state is State.CREATED
    assert await _claim(ledger, keys, iks[1]) is None  # its send will not happen
    assert await _claim(ledger, keys, iks[0]) is not None  # the lookup still runs


async def test_a_holder_whose_lease_ran_out_cannot_act_after_the_cancel(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.redis_prefix)
    batch, iks = await _batch(redis_client, settings, 1)
    # A claim without the early `sending` mark (as for a paused provider),
    # whose lease then runs out: the record is still plainly queued.
    stalled = await Ledger(redis_client, keys, lease_s=0.001).claim(iks[0], keys.job_id(iks[0], 1))
    assert stalled is not None
    await asyncio.sleep(0.01)
    report = await cancel_batch(redis_client, keys, batch)
    assert report.cancelled == 1
    with pytest.raises(LeaseLost):
        await stalled.mark_sending()


async def test_concurrent_claims_and_cancel_never_both_win(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.redis_prefix)
    ledger = Ledger(redis_client, keys)
    batch, iks = await _batch(redis_client, settings, 300)
    random.shuffle(iks)

    async def claims() -> list[HeldEntry]:
        got = []
        for ik in iks:
            entry = await _claim(ledger, keys, ik)
            if entry is not None:
                got.append(entry)
        return got

    held, report = await asyncio.gather(
        claims(), cancel_batch(redis_client, keys, batch, page_size=20)
    )

    held_keys = {h.invoice_key for h in held}
    records = await ledger.get_many(iks)
    for record in records:
        assert record is not None
        if record.invoice_key in held_keys:
            assert record.state is State.SENDING  # claimed first: it runs
        else:
            assert record.state is State.DISCARDED  # cancelled first: never claimed
    assert report.cancelled == 300 - len(held_keys)
    assert report.counts["in_flight"] == len(held_keys)


async def test_unknown_batch(redis_client: aioredis.Redis, settings: Settings) -> None:
    with pytest.raises(UnknownBatch):
        await cancel_batch(redis_client, Keys(settings.redis_prefix), "nosuch")


async def test_the_command(
    redis_client: aioredis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, _ = await _batch(redis_client, settings, 2)
    assert settings.redis_url is not None
    monkeypatch.setenv("INVOICER_REDIS_URL", settings.redis_url.get_secret_value())
    runner = CliRunner()
    done = await asyncio.to_thread(runner.invoke, app, ["cancel", batch, "--json"])
    assert done.exit_code == 0, done.output
    assert '"cancelled": 2' in done.output
    unknown = await asyncio.to_thread(runner.invoke, app, ["cancel", "nosuch"])
    assert unknown.exit_code == 2 and "unknown batch" in unknown.output
