"""Sentry: our job function reports bugs through sentry-sdk's arq integration on both
worker paths, never arq's `Retry`, and what arrives is scrubbed (read from a local DSN host)."""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from .support import ROOT

SECRET_KEY = "sk-live-9f8e7d6c5b4a3210"
PROBE = """
import asyncio, sys
import sentry_sdk
from arq import Retry
from pydantic import SecretStr
from jobs.models import Provider
from worker.app import arq_settings_class, worker_options
from worker.observability import job_reporting, setup_sentry
from worker.settings import load_settings

class Broken:
    def __getattr__(self, name):
        raise RuntimeError(
            "bug! Authorization: Bearer SECRET_KEY api_key=SECRET_KEY for ada@example.com "
            "at {'street': '1 Main Street'}"
        )

async def main():
    settings = load_settings({"INVOICER_REDIS_URL": "redis://127.0.0.1:1/0"}, env_file=None)
    setup_sentry(SecretStr(sys.argv[1]))
    direct = worker_options(settings, Provider.MAAST)["functions"][0].coroutine
    via_arq_cli = arq_settings_class(Provider.MAAST, settings).functions[0].coroutine
    for job in (direct, via_arq_cli):
        try:
            await job({"runtime": Broken(), "job_id": "job-1", "job_try": 1}, "maast:INV-1")
        except RuntimeError:
            pass
    async def deferred(ctx):
        raise Retry(defer=1)
    try:
        await job_reporting("deferred", deferred)({"job_id": "job-2", "job_try": 1})
    except Retry:
        pass
    sentry_sdk.flush(timeout=10)

asyncio.run(main())
""".replace("SECRET_KEY", SECRET_KEY)


@pytest.fixture
async def dsn_host() -> AsyncIterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []

    async def envelope(request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp inflates gzip bodies itself; in case not:
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        received.append(body)
        return web.json_response({"id": "0"})

    app = web.Application()
    app.router.add_post("/api/1/envelope/", envelope)
    app.router.add_post("/api/1/store/", envelope)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://publickey@127.0.0.1:{port}/1", received
    await runner.cleanup()


async def test_bugs_reach_sentry_scrubbed_from_both_worker_paths(
    dsn_host: tuple[str, list[bytes]],
) -> None:
    dsn, received = dsn_host
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROBE,
        dsn,
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()[-3000:]
    events = []
    for envelope in received:
        lines = envelope.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
    assert len(events) == 2  # one per worker path; arq's Retry is not an error
    for event in events:
        assert event["exception"]["values"][-1]["mechanism"]["type"] == "arq"
        assert event["tags"]["arq_task_id"] == "job-1"
        text = json.dumps(event)
        assert "bug!" in text
        for secret in (SECRET_KEY, "ada@example.com", "1 Main Street"):
            assert secret not in text, secret
