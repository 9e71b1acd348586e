"""Fixtures of the sandbox's own tests (`sandbox_url` and `sandbox` are in tests/conftest.py)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx2
import pytest

from sandbox import DEFAULT_MAAST_KEY, DEFAULT_STAX_KEY, SandboxClient

MAAST_AUTH = {
    "authorization": "Basic " + base64.b64encode(f":{DEFAULT_MAAST_KEY}".encode()).decode()
}
STAX_AUTH = {"authorization": f"Bearer {DEFAULT_STAX_KEY}"}


@pytest.fixture
async def http(sandbox_url: str, sandbox: SandboxClient) -> AsyncIterator[httpx2.AsyncClient]:
    """A plain httpx2 client pointed at the (reset) sandbox."""
    async with httpx2.AsyncClient(base_url=sandbox_url, timeout=10, trust_env=False) as client:
        yield client
