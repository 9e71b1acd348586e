"""`invoicer send`: create the invoices of a file now, through the ledger, one line per record.

How a user tries their credentials, and sends a small file at once. It is the
queue's own path, run in this process: the file goes through the same intake
into the ledger as a batch (numbers the ledger did not know are looked up at
the provider before their create: an earlier run may have made them), then
each record is run by the worker's own job function (`worker.runner`), one
at a time, with the shared limiter. So `send`, `send` again and `enqueue` of
the same file make one invoice per number, and everything the worker
guarantees holds here too (docs/operations.md, "invoicer send").

A record that cannot finish now (its landing window, a pause, a retry) is
left queued for `invoicer worker`, and its line says why.

`--dry-run` prints each create request as one JSON object per line on stdout
(key redacted; jq-friendly), human text on stderr, and needs neither an API
key nor Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import redis.asyncio as aioredis
import typer

from jobs.models import Provider
from jobs.providers import make_provider
from jobs.providers.base import ProviderConfig
from jobs.providers.json_body import dumps
from jobs.sources import Record, RecordError, SourceError, read_invoices
from worker.cli import common
from worker.enqueue import EnqueueReport, enqueue
from worker.intake import Intake, Prepared, Taken, prepare, prepared
from worker.keys import ARQ_JOB, Keys
from worker.ledger import LedgerRecord, State
from worker.report import describe_error
from worker.runner import Deferred, create_invoice_job
from worker.runtime import Runtime
from worker.settings import Settings

Line = tuple[bool, str]
"""One output line: (the record is done, the text)."""


def register(app: typer.Typer) -> None:
    """Add `send` to the app."""
    app.command("send")(send)


def send(
    file: Annotated[Path, typer.Argument(help="CSV or JSONL file of invoices.")],
    provider: Annotated[Provider, typer.Option(help="Where to create them.")],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print each create request as a JSON line, key redacted; send nothing "
            "(needs no API key and no Redis).",
        ),
    ] = False,
) -> None:
    """Create the invoices in FILE at the provider now, one line per record.

    Goes through the ledger like `invoicer enqueue`: a number already created
    is not created again. Exit 1 if a record was rejected or is left waiting.
    """
    s = common.settings()
    try:
        if dry_run:
            failed = _dry_run(file, s, provider)
        else:
            common.require_key(s, provider)
            failed = common.run(_send_all(file, common.with_redis_url(s), provider))
    except SourceError as exc:
        common.fail(f"{file}: {exc}")
    raise typer.Exit(common.EXIT_SOME_FAILED if failed else common.EXIT_OK)


# -- --dry-run -------------------------------------------------------------------------


def _dry_run(file: Path, s: Settings, provider: Provider) -> int:
    ps = s.provider(provider)
    # The request is printed with the key redacted: no key is needed to build it.
    client = make_provider(provider, ProviderConfig(base_url=ps.base_url, api_key=""))
    intake = Intake(provider, ps.account, rules=client.validate)
    failed = 0
    for item in read_invoices(file):
        taken = prepare(item, intake)
        if isinstance(taken, list):
            for problem in taken:
                common.err.print(f"invalid {problem}", highlight=False)
            failed += 1
            continue
        assert isinstance(item, Record)
        request = client.prepare_create(item.invoice)
        fields = {
            "method": request.method,
            "url": request.url,
            "headers": request.headers,
            "json": request.json,
        }
        # The wire body's own encoder: money stays an exact JSON number, and
        # a plain write keeps each object on one line whatever the terminal.
        typer.echo(dumps(fields))
    return failed


# -- the real run --------------------------------------------------------------------------


async def _send_all(file: Path, s: Settings, provider: Provider) -> int:
    intake = Intake(provider, s.provider(provider).account)
    items = list(prepared(read_invoices(file), intake))
    # The runner logs each outcome at INFO; here the per-record line says it.
    logging.getLogger("invoicer.worker").setLevel(logging.WARNING)
    async with common.redis_client(s) as redis:
        keys = common.keys(s)
        report = await enqueue(
            redis, keys, items, intake, batch=f"send {file.name}", lookup_new=True
        )
        common.err.print(f"batch {report.batch_id}", style="dim", highlight=False)
        runtime = await Runtime.start(s, redis, [provider])
        try:
            return await _run_each(runtime, items, report)
        finally:
            await runtime.close()


async def _run_each(runtime: Runtime, items: Sequence[Taken], report: EnqueueReport) -> int:
    conflicts = {line: message for line, _, message in report.conflicts}
    failed = 0
    for item in items:
        if isinstance(item, RecordError):
            done, text = False, f"rejected {item} (dead-lettered)"
        elif item[0] in conflicts:
            done, text = False, f"conflict line {item[0]} {item[1]}: {conflicts[item[0]]}"
        else:
            done, text = await _run_one(runtime, item)
        common.out.print(text, highlight=False, markup=False, soft_wrap=True)
        failed += not done
    return failed


async def _run_one(runtime: Runtime, item: Prepared) -> Line:
    line, number, script_item = item
    invoice_key = _text(script_item[0])
    where = f"line {line} {number}"
    record = await runtime.ledger.get(invoice_key)
    if record is None:  # enqueue wrote it a moment ago: a ledger bug, shown
        return False, f"missing {where}: no ledger record"
    ctx: dict[str, Any] = {"runtime": runtime, "job_id": record.job_id, "job_try": 1}
    try:
        result = await create_invoice_job(ctx, invoice_key)
    except Deferred as deferred:
        await _defer(runtime, record, deferred.defer_s)
        why = f"{deferred.why} (again in {deferred.defer_s:.0f}s)"
        return False, f"waiting {where}: left queued for `invoicer worker`: {why}"
    after = await runtime.ledger.get(invoice_key)
    if after is None:
        return False, f"missing {where}: no ledger record"
    done, text = _verdict(after, result["outcome"], where)
    if done or after.dead_lettered:
        await _drop_job(runtime.redis, runtime.keys, after)
    return done, text


def _verdict(record: LedgerRecord, outcome: str, where: str) -> Line:
    """What the record says once its job ran."""
    receipt = record.receipt
    if outcome in ("created", "sent") and receipt is not None:
        link = f" {receipt.link}" if receipt.link else ""
        return True, f"{outcome} {where}: id={receipt.provider_id}{link}"
    if record.dead_lettered:
        why = describe_error(record.error) if record.error else record.state.value
        return False, f"rejected {where} (dead-lettered): {why}"
    if record.state in (State.CREATED, State.SENT) and receipt and not record.unverified:
        return True, f"already {record.state.value} {where} (id={receipt.provider_id})"
    if outcome == "lease_lost":
        return False, f"waiting {where}: another worker took it over"
    return False, f"waiting {where}: {record.state.value}, held by another worker"


async def _defer(runtime: Runtime, record: LedgerRecord, delay_s: float) -> None:
    """What arq does with a `Retry`: the job runs again no sooner than `delay_s`."""
    queue = runtime.keys.queue(record.provider)
    await runtime.redis.zadd(queue, {record.job_id: int((time.time() + delay_s) * 1000)}, xx=True)


async def _drop_job(redis: aioredis.Redis, keys: Keys, record: LedgerRecord) -> None:
    """What arq does when a job ends: its queue entry and body go (nothing is left to do)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(keys.queue(record.provider), record.job_id)
        pipe.delete(ARQ_JOB + record.job_id)
        await pipe.execute()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
