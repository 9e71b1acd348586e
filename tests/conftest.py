"""Shared fixtures: a real Redis for the tests whose point is Redis.

With `INVOICER_REDIS_URL` set (CI points it at a dedicated database of the
machine's Redis 7) the tests use that server and flush that database before
each test; without it they start the embedded Redis in a temporary directory,
once per session.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sandbox.client import SandboxClient
from sandbox.config import SandboxConfig
from sandbox.server import running_sandbox
from worker import embedded


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis server for this test session."""
    url = os.environ.get("INVOICER_REDIS_URL")
    if url:
        yield url
        return
    data_dir: Path = tmp_path_factory.mktemp("redis")
    url, _ = embedded.ensure_running(data_dir)
    yield url
    embedded.stop(data_dir)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on a flushed database."""
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    """A provider sandbox over real HTTP, one per test module (a subprocess)."""
    with running_sandbox(SandboxConfig()) as url:
        yield url


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[SandboxClient]:
    """A client on the module's sandbox, emptied and back to its defaults, so
    tests never see each other's invoices, limits or faults."""
    async with SandboxClient(sandbox_url) as client:
        await client.configure(SandboxConfig())
        await client.reset()
        yield client
