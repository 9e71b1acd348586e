"""Fixtures: one real sandbox per test module, over HTTP on a free port.

`sandbox_url` starts the sandbox (a subprocess) once per module; `sandbox`
resets it and restores the default configuration before each test, so tests
in a module never see each other's invoices, limits or faults.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest

from jobs.providers.sandbox import (
    DEFAULT_MAAST_KEY,
    DEFAULT_STAX_KEY,
    SandboxClient,
    SandboxConfig,
    running_sandbox,
)

MAAST_AUTH = {
    "authorization": "Basic " + base64.b64encode(f":{DEFAULT_MAAST_KEY}".encode()).decode()
}
STAX_AUTH = {"authorization": f"Bearer {DEFAULT_STAX_KEY}"}


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    """Base URL of a sandbox subprocess shared by the module's tests."""
    with running_sandbox(SandboxConfig()) as url:
        yield url


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[SandboxClient]:
    """The inspection client, on a sandbox reset to defaults."""
    async with SandboxClient(sandbox_url) as client:
        await client.configure(SandboxConfig())
        await client.reset()
        yield client


@pytest.fixture
async def http(sandbox_url: str, sandbox: SandboxClient) -> AsyncIterator[httpx2.AsyncClient]:
    """A plain httpx2 client pointed at the (reset) sandbox."""
    async with httpx2.AsyncClient(base_url=sandbox_url, timeout=10, trust_env=False) as client:
        yield client
