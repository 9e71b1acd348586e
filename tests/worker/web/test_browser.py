"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

Against `invoicer web` (uvicorn on 127.0.0.1) with a real worker process and
the provider sandbox: log in, watch a batch's progress bar move while the
worker runs (htmx polling, no reload), requeue an edited dead letter and see
it leave the list, cancel a batch, and as the read token see no buttons and
be refused an action. Screenshots go to `test-output/browser/` (git-ignored).
`playwright install` is never used (it downloads a browser): the test runs
Debian's `/usr/bin/chromium` (`.ci/run` installs it) and skips, saying so,
only when that is absent.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis.asyncio as aioredis

from jobs.models import Provider
from jobs.sources import Record
from tests.worker.support import ROOT, enqueue_records, invoice, start_worker, worker_env
from worker.dlq import DeadLetters
from worker.ledger import Ledger, State

from .conftest import ADMIN_TOKEN, READ_TOKEN
from .dashboard_support import KEYS, park

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / "test-output" / "browser"
WATCHED = 40
"""Invoices of the batch whose progress bar the browser watches (at 240/min: ~10 s)."""
RATE = "240"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def web(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """`invoicer web` in its own process, with both tokens; its base URL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAAST_", "STAX_"))}
    env.update(
        INVOICER_REDIS_URL=redis_url,
        INVOICER_ADMIN_TOKEN=ADMIN_TOKEN,
        INVOICER_READ_TOKEN=READ_TOKEN,
        MAAST_RATE_PER_MINUTE=RATE,  # the workers' limit: the overview draws it
        PYTHONPATH=str(ROOT),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "web", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,  # no developer's .env
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                if httpx2.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline, "invoicer web did not answer in 30 s"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _seed(redis_url: str) -> dict[str, Any]:
    """A Maast batch to watch, two dead letters, a Stax batch (no Stax worker) to cancel."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.flushdb()
        watched = [Record(line=i + 2, invoice=invoice(f"W-{i:03d}")) for i in range(WATCHED)]
        fix = [Record(line=2, invoice=invoice("FIX-1")), Record(line=3, invoice=invoice("FIX-2"))]
        stax = [Record(line=i + 2, invoice=invoice(f"ST-{i}")) for i in range(5)]
        to_fix = await enqueue_records(redis, KEYS, fix, provider=Provider.MAAST, batch="fixes")
        keys = [await park(redis, "FIX-1"), await park(redis, "FIX-2")]
        month = await enqueue_records(redis, KEYS, watched, provider=Provider.MAAST, batch="month")
        mistake = await enqueue_records(redis, KEYS, stax, provider=Provider.STAX, batch="oops")
        return {
            "watched": month.batch_id,
            "fixes": to_fix.batch_id,
            "mistake": mistake.batch_id,
            "dead": keys,
        }
    finally:
        await redis.aclose()


async def _read(redis_url: str, key: str) -> tuple[State | None, bool, int]:
    """An invoice's state, whether it is dead-lettered, and the dead-letter count."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        record = await Ledger(redis, KEYS).get(key)
        count = await DeadLetters(redis, KEYS).count()
        return (
            (None if record is None else record.state),
            bool(record and record.dead_lettered),
            count,
        )
    finally:
        await redis.aclose()


def test_a_person_runs_month_end_from_the_dashboard(
    redis_url: str, sandbox_url: str, web: str, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM} (.ci/run installs Debian's package)")
    from playwright.sync_api import Page, expect, sync_playwright

    seeded = asyncio.run(_seed(redis_url))
    SHOTS.mkdir(parents=True, exist_ok=True)
    worker = None
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(dir=tmp_path, prefix="chromium-"),  # a fresh profile
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.set_default_timeout(15_000)
            page.on(
                "dialog", lambda dialog: dialog.accept()
            )  # the confirm() of destructive buttons

            def shot(name: str, of: Page = page) -> None:
                of.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

            # Log in with the admin token.
            page.goto(f"{web}/")
            expect(page).to_have_url(f"{web}/login")
            shot("01-login")
            page.fill("input[name=token]", ADMIN_TOKEN)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Overview")
            expect(page.locator("#role")).to_have_text("admin")
            shot("02-overview")

            # Watch the batch's progress bar move while a worker creates its invoices.
            page.goto(f"{web}/batches/{seeded['watched']}")
            bar = page.locator("#batch-progress")
            expect(bar).to_have_attribute("value", "0")
            env = worker_env(redis_url, sandbox_url, MAAST_RATE_PER_MINUTE=RATE)
            worker = start_worker(env, "--providers", "maast")
            seen = [0]
            deadline = time.monotonic() + 30
            while len(set(seen)) < 3 and time.monotonic() < deadline:
                page.wait_for_timeout(500)  # no reload: htmx swaps the live part in
                seen.append(int(bar.get_attribute("value") or 0))
            assert len(set(seen)) >= 3, f"the bar did not move twice: {seen}"
            assert seen == sorted(seen) and seen[-1] < WATCHED, seen
            shot("03-batch-moving")

            # The worker process shows on the overview, alive, with its last heartbeat.
            page.goto(f"{web}/")
            expect(page.locator("#workers .badge.alive")).to_have_count(1)
            expect(page.locator("#workers")).to_contain_text("1 alive")
            expect(page.locator("#provider-maast .limit-label")).to_have_text("limit 240/min")
            shot("03b-overview-worker")

            # Fix a dead letter's payload in the page and requeue it: it leaves the list.
            fixed, untouched = seeded["dead"]
            page.goto(f"{web}/dead-letters")
            expect(page.locator(f'tr[data-key="{fixed}"]')).to_have_count(1)
            expect(page.locator('[data-reason="rejected"]')).to_contain_text("2")
            shot("04-dead-letters")
            page.click(f'a[href="/dead-letters/{fixed}"]')
            expect(page.locator("#message")).to_contain_text("customer unknown")
            payload = json.loads(page.input_value("#payload"))
            payload["customer"]["id"] = "CUST0002"
            page.fill("#payload", json.dumps(payload, indent=2))
            shot("05-dead-letter-edited")
            page.click("#requeue")
            expect(page).to_have_url(f"{web}/dead-letters")
            expect(page.locator("#flash")).to_contain_text(f"{fixed}: requeued")
            expect(page.locator(f'tr[data-key="{fixed}"]')).to_have_count(0)
            expect(page.locator(f'tr[data-key="{untouched}"]')).to_have_count(1)
            shot("06-requeued")

            # Cancel the batch enqueued by mistake (nothing drains Stax here).
            page.goto(f"{web}/batches/{seeded['mistake']}")
            page.click("text=Cancel the batch")
            expect(page.locator("#flash")).to_contain_text("5 invoices cancelled")
            expect(page.locator('td[data-state="discarded"]')).to_have_text("5")
            expect(page.locator("text=Cancel the batch")).to_have_count(0)
            shot("07-cancelled")

            # The read token sees the pages without buttons, and an action is refused.
            browser.clear_cookies()
            page.goto(f"{web}/login")
            page.fill("input[name=token]", READ_TOKEN)
            page.click("button[type=submit]")
            expect(page.locator("#role")).to_have_text("read only")
            page.goto(f"{web}/dead-letters/{untouched}")
            expect(page.locator("#requeue")).to_have_count(0)
            expect(page.locator("text=Discard")).to_have_count(0)
            refused = page.evaluate(
                """async (key) => {
                    const headers = JSON.parse(document.body.getAttribute("hx-headers"));
                    const url = `/dead-letters/${key}/discard`;
                    const r = await fetch(url, {method: "POST", headers});
                    return {status: r.status, body: await r.json()};
                }""",
                untouched,
            )
            assert refused["status"] == 403, refused
            assert "read token may only look" in refused["body"]["error"]["message"]
            shot("08-read-only")
        finally:
            browser.close()
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=15)

    state, parked, _ = asyncio.run(_read(redis_url, untouched))
    assert parked and state is State.REJECTED  # the refused discard changed nothing
    state, parked, _ = asyncio.run(_read(redis_url, fixed))
    assert not parked and state is not State.REJECTED
    for name in ("01-login", "03-batch-moving", "06-requeued", "07-cancelled", "08-read-only"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000
