"""Fixtures of the worker tests that talk to the provider sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from jobs.providers.sandbox.client import SandboxClient
from jobs.providers.sandbox.config import SandboxConfig
from jobs.providers.sandbox.server import running_sandbox


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    """A sandbox over real HTTP, one per test module (a subprocess)."""
    with running_sandbox(SandboxConfig()) as url:
        yield url


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[SandboxClient]:
    """A client on the module's sandbox, emptied and back to its defaults."""
    async with SandboxClient(sandbox_url) as client:
        await client.reset()
        await client.configure(SandboxConfig())
        yield client
