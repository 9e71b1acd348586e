"""Verification on the real ledger: what voiding a late twin leaves in Redis.

The runner's rig (tests/worker/test_runner.py): a real ledger and limiter,
a fake Stax whose server side the test fills. Each test drives one invoice
through an unknown outcome, plays a late landing at the provider, passes the
landing windows, and checks the record, its history, the batch and global
counters, the operator list, `invoicer status` and the batch report.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner, Result

from jobs.errors import OutcomeUnknown
from jobs.models import InvoiceReceipt, Provider
from tests.fakes import Landed
from tests.worker.test_ledger import assert_counts_match, counters
from tests.worker.test_runner import PREFIX, Rig, build_rig, make_invoice
from worker.cli import app
from worker.duplicates import Duplicates
from worker.ledger import State
from worker.report import duplicate_counts, write_report
from worker.status import read_status

KEY = "stax:INV-1"


@pytest.fixture
async def rig(redis_client: aioredis.Redis) -> AsyncIterator[Rig]:
    rig = build_rig(redis_client, Provider.STAX)
    yield rig
    assert not rig.runtime.holding


def twin(provider_id: str, *, sent: bool = False) -> InvoiceReceipt:
    """A copy of INV-1 that landed at the provider without our knowing."""
    return InvoiceReceipt(
        provider=Provider.STAX,
        provider_id=provider_id,
        invoice_number="INV-1",
        status="SENT" if sent else "DRAFT",
        total=Decimal("10.00"),
        sent=sent,
    )


async def events(rig: Rig) -> list[tuple[str, str]]:
    return [(str(e["event"]), str(e["detail"])) for e in await rig.ledger.history(KEY)]


async def batch_counters(rig: Rig) -> dict[str, int]:
    record = await rig.record(KEY)
    return await counters(rig.runtime.redis, rig.runtime.keys.batch(record.batch))


async def recreated_after_an_unknown_outcome(rig: Rig, *, send: bool) -> None:
    """Enqueue; the create's outcome is unknown (it did not land); the job
    waits out its window, finds nothing and creates again: unverified."""
    await rig.enqueue(make_invoice(send=send))
    rig.provider.script("create", OutcomeUnknown("read timeout"))
    await rig.retry(KEY)
    await rig.retry(KEY)  # not found inside the window: wait
    await rig.pass_landing_window(KEY)
    await rig.retry(KEY)  # created again, as a draft, unverified
    record = await rig.record(KEY)
    assert record.state is State.CREATED and record.unverified
    assert rig.provider.send_now == [send, False]
    assert (await batch_counters(rig))["unverified"] == 1


async def test_a_late_twin_is_voided_recorded_and_counted(rig: Rig) -> None:
    # Given an invoice re-created after an unknown outcome, and the first
    # request processed late after all (a draft)
    await recreated_after_an_unknown_outcome(rig, send=False)
    rig.provider.hold(twin("late-1"))
    ours = (await rig.record(KEY)).receipt
    assert ours is not None
    # When its window has passed and the job runs
    await rig.pass_landing_window(KEY)
    assert (await rig.run(KEY))["outcome"] == "created"
    # Then the twin was voided and ours kept: one live copy
    assert rig.provider.live("INV-1") == 1
    record = await rig.record(KEY)
    assert record.state is State.CREATED and not record.unverified
    assert record.receipt is not None and record.receipt.provider_id == ours.provider_id
    assert record.voided_ids == ("late-1",) and record.open_ids == ()
    assert ("voided", f"late-1 (DELETED), duplicate of {ours.provider_id}") in await events(rig)
    # counted per batch and overall, the invariants of the counters intact
    c = await batch_counters(rig)
    assert (c["voided"], c.get("duplicates_open", 0), c["unverified"]) == (1, 0, 0)
    totals = await counters(rig.runtime.redis, rig.runtime.keys.totals())
    assert totals["voided"] == 1
    await assert_counts_match(rig.runtime.redis, rig.ledger)
    assert await Duplicates(rig.runtime.redis, rig.runtime.keys).count() == 0
    assert (await rig.run(KEY))["outcome"] == "nothing_to_do"


async def test_a_late_twin_sent_on_create_is_kept_and_our_draft_voided(rig: Rig) -> None:
    # Given a first Stax attempt with send_now, processed late: the customer got it
    await recreated_after_an_unknown_outcome(rig, send=True)
    rig.provider.hold(twin("late-sent", sent=True))
    ours = (await rig.record(KEY)).receipt
    assert ours is not None and not ours.sent
    # When verified
    await rig.pass_landing_window(KEY)
    assert (await rig.run(KEY))["outcome"] == "sent"
    # Then the copy the customer holds is kept, ours voided, nothing sent again
    assert rig.provider.calls_of("send") == 0
    assert rig.provider.live("INV-1") == 1 and rig.provider.sent_copies("INV-1") == 1
    record = await rig.record(KEY)
    assert record.state is State.SENT
    assert record.receipt is not None and record.receipt.provider_id == "late-sent"
    assert record.voided_ids == (ours.provider_id,)
    await assert_counts_match(rig.runtime.redis, rig.ledger)


async def test_a_sent_twin_that_cannot_be_voided_goes_to_the_operator_list(rig: Rig) -> None:
    # Given a first Stax attempt sent on create whose answer was lost (it
    # landed, sent), and another sent copy of the number at the provider
    await rig.enqueue(make_invoice(send=True))
    rig.provider.script("create", Landed())
    await rig.retry(KEY)
    first = rig.provider.held["INV-1"][0]
    assert first.sent
    rig.provider.hold(twin("other-sent", sent=True))
    # When it is adopted (unverified) and verified after its window
    await rig.retry(KEY)
    await rig.pass_landing_window(KEY)
    assert (await rig.run(KEY))["outcome"] == "sent"
    # Then the ledger keeps its own sent copy, sends nothing more, and lists the other
    assert rig.provider.calls_of("send") == 0 and rig.provider.calls_of("void") == 0
    record = await rig.record(KEY)
    assert record.state is State.SENT and record.open_ids == ("other-sent",)
    listed = await Duplicates(rig.runtime.redis, rig.runtime.keys).list()
    assert [(e.invoice_key, e.keeper) for e in listed] == [(KEY, first.provider_id)]
    (other,) = listed[0].copies
    assert (other.provider_id, other.status, other.sent) == ("other-sent", "SENT", True)
    assert "cannot be voided" in other.why
    assert (await batch_counters(rig))["duplicates_open"] == 1
    assert any(e == "duplicate left open" for e, _ in await events(rig))
    await assert_counts_match(rig.runtime.redis, rig.ledger)


async def test_a_listing_without_our_copy_is_postponed_without_voiding(rig: Rig) -> None:
    await recreated_after_an_unknown_outcome(rig, send=False)
    ours = (await rig.record(KEY)).receipt
    assert ours is not None
    rig.provider.held["INV-1"] = [twin("late-1")]  # the listing lost ours
    await rig.pass_landing_window(KEY)
    await rig.retry(KEY)
    assert (
        "verification postponed",
        f"the ledger's copy {ours.provider_id} is not among the live copies listed",
    ) in await events(rig)
    assert rig.provider.calls_of("void") == 0 and (await rig.record(KEY)).unverified


async def test_status_and_report_show_voided_and_open_duplicates(rig: Rig) -> None:
    await recreated_after_an_unknown_outcome(rig, send=False)
    rig.provider.hold(twin("late-1"))
    await rig.pass_landing_window(KEY)
    await rig.run(KEY)
    r = rig.runtime
    record = await rig.record(KEY)
    snap = await read_status(
        r.redis, r.keys, batch=record.batch, providers=[Provider.STAX], accounts={}
    )
    assert (snap.voided, snap.unverified, snap.duplicates_found) == (1, 0, 0)
    assert await duplicate_counts(r.redis, r.keys, record.batch) == (1, 0)
    out = io.StringIO()
    await write_report(r.redis, r.keys, record.batch, out)
    (row,) = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert (row["voided_duplicates"], row["open_duplicates"]) == ("late-1", "")


async def invoke(redis_url: str, *args: str) -> Result:
    env = {"INVOICER_REDIS_URL": redis_url, "INVOICER_REDIS_PREFIX": PREFIX, "COLUMNS": "250"}
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


async def test_the_operator_list_is_listed_shown_by_status_and_resolved(
    rig: Rig, redis_url: str
) -> None:
    # Given an invoice whose sent twin could not be voided
    await rig.enqueue(make_invoice(send=True))
    rig.provider.script("create", Landed())
    await rig.retry(KEY)
    rig.provider.hold(twin("other-sent", sent=True))
    await rig.retry(KEY)
    await rig.pass_landing_window(KEY)
    await rig.run(KEY)
    # When an operator looks
    listed = await invoke(redis_url, "duplicates", "list", "--json")
    status = await invoke(redis_url, "status", "--json")
    table = await invoke(redis_url, "status")
    # Then the list names it with both provider ids, and status counts it
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.stdout)
    keeper = rig.provider.held["INV-1"][0].provider_id
    assert (entry["invoice_key"], entry["keeper"]) == (KEY, keeper)
    assert [c["provider_id"] for c in entry["copies"]] == ["other-sent"]
    assert json.loads(status.stdout)["duplicates_open"] == 1
    assert "duplicates open 1" in table.stdout and "invoicer duplicates list" in table.stdout
    # and once dealt with at the provider, it is taken off the list
    assert (await invoke(redis_url, "duplicates", "resolve", KEY)).exit_code == 0
    assert json.loads((await invoke(redis_url, "duplicates", "list", "--json")).stdout) == []
    again = await invoke(redis_url, "duplicates", "resolve", KEY)
    assert again.exit_code == 2 and "not on the list" in again.stderr
