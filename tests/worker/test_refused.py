"""Refused jobs: what a worker checks before arq touches a job, and the list
a refused job goes to (pure checks, then real Redis)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq.jobs import deserialize_job_raw
from arq.utils import ms_to_datetime
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from jobs.models import Customer, Invoice, LineItem, Provider
from jobs.sources import Record
from tests.worker.support import enqueue_records
from worker.arq_job import JOB_FUNCTION, MAX_TRIES, deserialize_job, job_template
from worker.cli import app
from worker.keys import Keys
from worker.ledger import Ledger
from worker.refused import (
    KEEP_REFUSED,
    Refusals,
    clear_refused,
    owned_invoice,
    problem_of,
    refused_count,
    refused_jobs,
    shown,
)

KEYS = Keys()
JOB_ID = "invoicer:maast:INV-1#1"


def body(**changes: Any) -> bytes:
    data: dict[str, Any] = {"t": 1, "f": JOB_FUNCTION, "a": ["maast:INV-1"], "k": {}, "et": 17}
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def test_our_own_job_passes() -> None:
    before, between, after = job_template()
    ours = f"{before}{json.dumps(['maast:INV-1'])}{between}1796165863346{after}".encode()
    assert problem_of(JOB_ID, ours, KEYS, Provider.MAAST) is None
    assert (
        problem_of("invoicer:maast@eu:A/1#12", body(a=["maast@eu:A/1"]), KEYS, Provider.MAAST)
        is None
    )


@pytest.mark.parametrize(
    ("job_id", "raw", "why"),
    [
        (JOB_ID, body(et="yesterday"), 'enqueue time "et"'),
        (JOB_ID, body(et=1e300), 'enqueue time "et"'),
        (JOB_ID, body(et=-1), 'enqueue time "et"'),
        (JOB_ID, body(et=True), 'enqueue time "et"'),
        (JOB_ID, body(t="1"), 'try count "t"'),
        (JOB_ID, body(t=MAX_TRIES), 'try count "t"'),
        (JOB_ID, body(t=...), 'try count "t"'),
        (JOB_ID, body(f=["x"]), "not create_invoice_job"),
        (JOB_ID, body(f="os.system"), "not create_invoice_job"),
        (JOB_ID, body(a=[]), "not one invoice key"),
        (JOB_ID, body(a=["maast:INV-1", "x"]), "not one invoice key"),
        (JOB_ID, body(a=[7]), "not one invoice key"),
        (JOB_ID, body(k={"x": 1}), "not one invoice key"),
        (JOB_ID, b"hello", "not JSON"),
        (JOB_ID, b"\xff\xfe", "not JSON"),
        (JOB_ID, b"[1, 2]", "a JSON list"),
        ("5f3e9a0c1d", body(), "not one of ours"),
        ("invoicer:maast:INV-1#one", body(), "not one of ours"),
        ("invoicer:paypal:INV-1#1", body(a=["paypal:INV-1"]), "not one of ours"),
        (JOB_ID, body(a=["maast:INV-2"]), "not the invoice its id names"),
        ("invoicer:stax:INV-1#1", body(a=["stax:INV-1"]), "belongs to the stax queue"),
    ],
)
def test_what_arq_or_the_runner_cannot_run_is_refused_with_why(
    job_id: str, raw: bytes, why: str
) -> None:
    problem = problem_of(job_id, raw, KEYS, Provider.MAAST)
    assert problem is not None and why in problem


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "t": JSON | st.integers(),
        "f": JSON | st.just(JOB_FUNCTION),
        "a": JSON | st.just(["maast:INV-1"]),
        "k": JSON | st.just({}),
        "et": JSON | st.integers(),
    },
)


@given(data=FIELDS | JSON, job_id=st.just(JOB_ID) | st.text(max_size=30))
def test_whatever_a_job_holds_the_check_answers_and_passes_only_what_arq_can_run(
    data: object, job_id: str
) -> None:
    raw = json.dumps(data).encode()
    if problem_of(job_id, raw, KEYS, Provider.MAAST) is not None:
        return
    # What arq's run_job does with a job before calling ours, none of which may raise:
    function, _args, kwargs, job_try, enqueue_ms = deserialize_job_raw(
        raw, deserializer=deserialize_job
    )
    assert function == JOB_FUNCTION and kwargs == {} and owned_invoice(job_id, KEYS)
    ms_to_datetime(enqueue_ms)
    assert not (job_try and job_try > 1 and job_try > MAX_TRIES)
    assert isinstance(enqueue_ms - 1, int) and isinstance(job_try + 1, int)


def test_shown_keeps_log_lines_short_and_printable() -> None:
    assert shown("x" * 1000, 10) == "xxxxxxxxxx... (1,000 characters)"
    assert shown("a\nb\x00") == "a\\nb\\x00"


# -- the list ---------------------------------------------------------------------


async def test_a_refused_job_leaves_its_queue_for_the_list_once(
    redis_client: aioredis.Redis,
) -> None:
    queue = KEYS.queue(Provider.MAAST)
    await redis_client.zadd(queue, {JOB_ID: 1, "other-app-job": 1})
    await redis_client.set("arq:job:" + JOB_ID, b"hello")
    await redis_client.set("arq:job:other-app-job", b"theirs")
    refusals = Refusals(redis_client, KEYS, Ledger(redis_client, KEYS))

    await refusals.refuse(queue, JOB_ID, "its body is not JSON", "hello")
    await refusals.refuse(queue, "other-app-job", "its id is not one of ours")

    assert await redis_client.zcard(queue) == 0
    assert not await redis_client.exists("arq:job:" + JOB_ID)
    # not ours: only taken out of our queue, its arq keys left to their owner
    assert await redis_client.get("arq:job:other-app-job") == b"theirs"
    newest, oldest = await refused_jobs(redis_client, KEYS)
    assert (newest.job_id, newest.invoice_key) == ("other-app-job", None)
    assert (oldest.invoice_key, oldest.body, oldest.dead_lettered) == (
        "maast:INV-1",
        "hello",
        False,
    )
    assert await refused_count(redis_client, KEYS) == 2
    assert await clear_refused(redis_client, KEYS) == 2
    assert await refused_count(redis_client, KEYS) == 0


async def test_the_list_keeps_the_newest_and_reads_a_damaged_entry(
    redis_client: aioredis.Redis,
) -> None:
    refusals = Refusals(redis_client, KEYS, Ledger(redis_client, KEYS))
    for i in range(KEEP_REFUSED + 5):
        await refusals.refuse("q", f"job-{i}", "not ours")
    assert await refused_count(redis_client, KEYS) == KEEP_REFUSED
    await redis_client.lpush(KEYS.refused_jobs(), b"\xff not json")  # type: ignore[misc]
    first, second = await refused_jobs(redis_client, KEYS, limit=2)
    assert first.reason == "unreadable entry" and second.job_id == f"job-{KEEP_REFUSED + 4}"


async def test_status_counts_them_and_the_cli_lists_and_clears_them(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    refusals = Refusals(redis_client, KEYS, Ledger(redis_client, KEYS))
    await refusals.refuse(KEYS.queue(Provider.MAAST), JOB_ID, "its try count \"t\" is '1'", "{}")
    env = {"INVOICER_REDIS_URL": redis_url, "COLUMNS": "200"}

    def cli(*args: str) -> Result:
        result = CliRunner().invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result

    status = await asyncio.to_thread(cli, "status", "--json")
    assert json.loads(status.stdout)["refused_jobs"] == 1
    assert "refused jobs 1" in (await asyncio.to_thread(cli, "status")).stdout
    listed = json.loads((await asyncio.to_thread(cli, "refused", "list", "--json")).stdout)
    assert [(e["job_id"], e["invoice_key"]) for e in listed] == [(JOB_ID, "maast:INV-1")]
    table = (await asyncio.to_thread(cli, "refused", "list")).stdout
    assert JOB_ID in table and "try count" in table
    assert "cleared 1" in (await asyncio.to_thread(cli, "refused", "clear")).stdout
    assert json.loads((await asyncio.to_thread(cli, "refused", "list", "--json")).stdout) == []


async def test_refusing_the_job_of_a_damaged_record_still_lists_it(
    redis_client: aioredis.Redis,
) -> None:
    # Given an invoice whose record no longer parses, and whose job is poison too
    invoice = Invoice(
        number="INV-1",
        customer=Customer(id="c1"),
        lines=[LineItem(description="w", quantity=Decimal(1), unit_price=Decimal(5))],
    )
    await enqueue_records(
        redis_client, KEYS, [Record(line=2, invoice=invoice)], provider=Provider.MAAST
    )
    await redis_client.hset(KEYS.ledger("maast:INV-1"), "failures", "many")  # type: ignore[misc]
    refusals = Refusals(redis_client, KEYS, Ledger(redis_client, KEYS))
    # When the job is refused, nothing raises and the entry names the invoice
    await refusals.refuse(KEYS.queue(Provider.MAAST), JOB_ID, "its body is not JSON")
    (entry,) = await refused_jobs(redis_client, KEYS)
    assert (entry.invoice_key, entry.dead_lettered) == ("maast:INV-1", False)
    assert not await redis_client.zscore(KEYS.leases(), "maast:INV-1")  # no lease left behind
