"""Fixtures of the worker tests (Redis and the sandbox: tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.worker.support import LIMITER_KEYS, LimiterFactory, limiter_settings
from worker.limits import ProviderLimiter


@pytest.fixture
def make_limiter(redis_client: aioredis.Redis) -> LimiterFactory:
    """Limiters of one Stax account (`limiter_settings`) under `LIMITER_KEYS`."""

    def make(
        rate_per_minute: float | None = 600, failed_per_minute: int | None = 8, **kw: Any
    ) -> ProviderLimiter:
        settings = limiter_settings(rate_per_minute, failed_per_minute)
        return ProviderLimiter(redis_client, LIMITER_KEYS, settings, **kw)

    return make
