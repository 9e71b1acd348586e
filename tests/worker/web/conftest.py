"""Fixtures of the web tests: the app over ASGI (httpx2's transport) on the test Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from worker.settings import Settings, load_settings
from worker.web import create_app

ADMIN_TOKEN = "admin-token-for-tests-0001"
READ_TOKEN = "read-token-for-tests-00001"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


def web_settings(redis_url: str, **env: str) -> Settings:
    """Settings with both tokens, on the test Redis."""
    base = {
        "INVOICER_REDIS_URL": redis_url,
        "INVOICER_ADMIN_TOKEN": ADMIN_TOKEN,
        "INVOICER_READ_TOKEN": READ_TOKEN,
        "INVOICER_WEBHOOK_SECRET": "whsec-for-tests-000000001",
    }
    base.update(env)
    return load_settings({k: v for k, v in base.items() if v}, env_file=None)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return web_settings(redis_url)


@pytest.fixture
def app(settings: Settings, redis_client: aioredis.Redis) -> FastAPI:
    return create_app(settings, redis_client)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c
