"""The exactly-once scenarios of issue 6, shared by the short runs in `make test`
(tests/worker/test_exactly_once.py) and the long ones in `make chaos`
(tests/chaos/test_chaos.py).

Each scenario is real: `invoicer worker` processes, the test's Redis, the
sandbox over HTTP misbehaving as asked. It returns `Figures`, read from the
sandbox (the witness of what the provider holds) and from the ledger (what
the batch report says), for the test to assert on and the chaos run to print.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis

from jobs.create_invoice import NOT_FOUND_WHY
from jobs.models import Invoice, Provider
from sandbox.client import SandboxClient
from sandbox.config import Faults, FaultSpec, SandboxConfig, Target
from tests.worker.support import (
    enqueue,
    invoice,
    settings_of,
    start_worker,
    wait_all,
    worker_env,
)
from worker.duplicates import Duplicates
from worker.keys import Keys, invoice_key
from worker.ledger import Ledger, State
from worker.report import duplicate_counts

Env = dict[str, str]


@dataclass(frozen=True)
class Figures:
    """What one run did, for the assertions and for the chaos run's closing note."""

    invoices: int
    faults: int
    """Fault events the sandbox applied (late commits, for that scenario)."""
    kills: int
    created: int
    """Invoices the provider created, twins included."""
    duplicates_created: int
    """created - invoices: twins that existed at some point."""
    voided: int
    """Voided at the provider (the sandbox's count)."""
    report_voided: int
    """Voided as the batch counters say (what `invoicer report` prints)."""
    report_open: int
    """Left open (sent or paid) as the batch counters say."""
    live: int
    sent: int
    numbers_live_not_one: list[str]
    numbers_sent_more_than_one: list[str]
    numbers_sent_not_one: list[str]
    states: dict[str, int]
    waited: int
    """Invoices whose lookup found nothing inside a landing window, and waited."""
    seconds: float

    def line(self) -> str:
        """One line for the chaos run's output."""
        shown = {k: v for k, v in asdict(self).items() if not k.startswith("numbers_")}
        return " ".join(f"{k}={v}" for k, v in shown.items())


async def figures(
    redis: aioredis.Redis,
    sandbox: SandboxClient,
    env: Env,
    provider: Provider,
    batch: str,
    numbers: list[str],
    *,
    kills: int,
    started: float,
    faults: int | None = None,
) -> Figures:
    summary = await sandbox.copies_summary(provider.value)
    keys = Keys(settings_of(env).redis_prefix)
    records = await Ledger(redis, keys).get_many(
        [invoice_key(provider, "default", n) for n in numbers]
    )
    states: dict[str, int] = {}
    waited = 0
    ledger = Ledger(redis, keys)
    for record in records:
        assert record is not None
        states[record.state.value] = states.get(record.state.value, 0) + 1
        history = await ledger.history(record.invoice_key)
        waited += any(str(e["detail"]).startswith(NOT_FOUND_WHY) for e in history)
    voided, left_open = await duplicate_counts(redis, keys, batch)
    events = await sandbox.fault_events()
    return Figures(
        invoices=len(numbers),
        faults=len(events) if faults is None else faults,
        kills=kills,
        created=summary.created,
        duplicates_created=summary.created - len(numbers),
        voided=summary.voided,
        report_voided=voided,
        report_open=left_open,
        live=summary.live,
        sent=summary.sent,
        numbers_live_not_one=summary.live_not_one,
        numbers_sent_more_than_one=summary.sent_more_than_one,
        numbers_sent_not_one=summary.sent_not_one,
        states=states,
        waited=waited,
        seconds=round(time.monotonic() - started, 1),
    )


def _items(prefix: str, count: int, *, send: bool) -> list[Invoice]:
    return [invoice(f"{prefix}-{i:04d}").model_copy(update={"send": send}) for i in range(count)]


async def late_commits(
    redis_url: str,
    redis: aioredis.Redis,
    sandbox: SandboxClient,
    sandbox_url: str,
    *,
    provider: Provider,
    invoices: int,
    probability: float,
    beyond_window: bool,
    workers: int = 2,
    seed: int = 5,
) -> Figures:
    """Creates committed late at `probability`, `--send`, `workers` worker processes.

    `beyond_window=False`: a late create is held past the read timeout but
    inside its landing window: the lookup made once the window passed finds
    it, and nothing is created twice.

    `beyond_window=True`: the provider breaks our assumption. A late create is
    held past lease + landing window, so the lookup after the window finds
    nothing, the invoice is created again, and the first request lands after
    that: a real twin that verification must find and void (or, if it was
    sent on create, keep and void ours). Only first attempts are late (the
    faults are switched off once every invoice has had one): a re-create that
    is late beyond its window too could land after its own verification,
    which no lookup can foresee.
    """
    env = worker_env(
        redis_url, sandbox_url, STAX_RATE_PER_MINUTE="60000", MAAST_RATE_PER_MINUTE="60000"
    )
    s = settings_of(env)
    window_s = s.lease_s + s.landing_window_s
    hold_s = window_s + 2 if beyond_window else window_s - 3
    spec = FaultSpec(late_commit=probability, hold_s=hold_s, targets=frozenset({"create"}))
    await sandbox.configure(SandboxConfig(stax_rate_per_window=None))
    await sandbox.set_faults(Faults(seed=seed, maast=spec, stax=spec))
    items = _items("LATE", invoices, send=True)
    started = time.monotonic()
    report = await enqueue(env, list(items), provider)
    assert report.accepted == invoices
    procs = [start_worker(env, "--providers", provider.value, "--burst") for _ in range(workers)]
    if beyond_window:
        await _until_each_was_tried(sandbox, provider, invoices, procs)
        await sandbox.set_faults(Faults())
    await asyncio.to_thread(wait_all, procs, 600)
    numbers = [i.number for i in items]
    return await figures(
        redis, sandbox, env, provider, report.batch_id, numbers, kills=0, started=started
    )


async def _until_each_was_tried(
    sandbox: SandboxClient,
    provider: Provider,
    count: int,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    """Wait until `count` requests reached the sandbox: one first create per
    invoice (a fresh invoice needs no lookup)."""
    deadline = time.monotonic() + 120
    while await _received(sandbox, provider) < count:
        assert all(w.poll() is None for w in workers), "a worker exited before its first tries"
        assert time.monotonic() < deadline, "the workers never tried every invoice"
        await asyncio.sleep(0.02)


async def _received(sandbox: SandboxClient, provider: Provider) -> int:
    stats = await sandbox.stats()
    return int(stats["providers"][provider.value]["requests"])  # type: ignore[index]


async def slow_provider_kill(
    redis_url: str,
    redis: aioredis.Redis,
    sandbox: SandboxClient,
    sandbox_url: str,
    *,
    invoices: int,
    in_flight: int,
    latency_s: float,
    lease_s: float,
    slow_lookups: bool,
    provider: Provider = Provider.MAAST,
) -> Figures:
    """A provider slower than the lease; a worker SIGKILLed with `in_flight`
    create requests at the provider, its leases left to expire, a second
    worker taking over while those requests are still being processed.

    `slow_lookups=False` slows creates only: the takeover's lookup is answered
    at once, before the dead worker's creates land, and finds nothing (what
    duplicated without landing windows). `True` slows every call kind.
    The figures' `faults` is the number of requests in flight at the kill.
    """
    read_s = latency_s + 3
    env = worker_env(
        redis_url,
        sandbox_url,
        INVOICER_LEASE_S=f"{lease_s:g}",
        INVOICER_READ_TIMEOUT_S=f"{read_s:g}",
        STAX_RATE_PER_MINUTE="60000",
    )
    slowed: frozenset[Target] = frozenset({"create", "send", "lookup", "void"})
    if not slow_lookups:
        slowed = frozenset({"create"})
    await sandbox.configure(SandboxConfig(stax_rate_per_window=None))
    await sandbox.set_faults(
        Faults(latency_ms=latency_s * 1000, targets=slowed, latency_targets=slowed)
    )
    items = _items("SLOW", invoices, send=False)
    started = time.monotonic()
    report = await enqueue(env, list(items), provider)
    victim = start_worker(env, "--providers", provider.value, "--concurrency", str(in_flight))
    await _until_in_flight(sandbox, provider, victim, in_flight, timeout_s=60)
    # The survivor takes the dead worker's invoices over as soon as their
    # leases expire, well before those creates are processed: with room for
    # every invoice (its own creates must not hold the slots), and up before
    # the leases expire (under a short lease: before the kill).
    room = str(invoices)
    survivor_args = ("--providers", provider.value, "--burst", "--concurrency", room)
    survivor = start_worker(env, *survivor_args) if lease_s < 5 else None
    if survivor is not None:
        await _until_workers(redis, env, 2, survivor)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = survivor or start_worker(env, *survivor_args)
    await asyncio.to_thread(wait_all, [survivor], 900)
    numbers = [i.number for i in items]
    return await figures(
        redis,
        sandbox,
        env,
        provider,
        report.batch_id,
        numbers,
        kills=1,
        started=started,
        faults=in_flight,
    )


async def _until_in_flight(
    sandbox: SandboxClient,
    provider: Provider,
    worker: subprocess.Popen[bytes],
    count: int,
    *,
    timeout_s: float,
) -> None:
    """Wait until `count` requests reached the sandbox and none was answered yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
        received = await _received(sandbox, provider)
        if received >= count:
            assert await sandbox.created_counts(provider.value) == {}, "answered too soon"
            return
        assert time.monotonic() < deadline, f"only {received} requests reached the sandbox"
        await asyncio.sleep(0.05)


async def _until_workers(
    redis: aioredis.Redis, env: Env, count: int, worker: subprocess.Popen[bytes]
) -> None:
    """Wait until `count` worker processes wrote their heartbeat record."""
    key = Keys(settings_of(env).redis_prefix).workers()
    deadline = time.monotonic() + 60
    while int(await redis.hlen(key)) < count:  # type: ignore[misc]
        assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
        assert time.monotonic() < deadline, "the second worker never started"
        await asyncio.sleep(0.05)


async def operator_list_size(redis: aioredis.Redis, env: Env) -> int:
    return await Duplicates(redis, Keys(settings_of(env).redis_prefix)).count()


FINAL_STATES = {State.SENT.value, State.CREATED.value}
