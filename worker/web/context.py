"""What every route is handed: the settings, the Redis client and the key names.

Built once by `worker.web.create_app` and kept on `app.state`; routes take it
with `Depends(context)`. Nothing here reads the environment or holds a rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request

from jobs.models import Provider
from worker.keys import Keys
from worker.settings import Settings
from worker.web.roles import Tokens


@dataclass(frozen=True)
class WebContext:
    """The application's shared state."""

    settings: Settings
    redis: aioredis.Redis
    keys: Keys
    tokens: Tokens

    def account(self, provider: Provider) -> str:
        """The configured account of `provider`."""
        return self.settings.provider(provider).account

    @property
    def accounts(self) -> dict[Provider, str]:
        """Every provider's configured account."""
        return {p: self.account(p) for p in Provider}


def context(request: Request) -> WebContext:
    """FastAPI dependency: the application's `WebContext`."""
    found: WebContext = request.app.state.invoicer
    return found


Context = Annotated[WebContext, Depends(context)]
"""A route parameter annotated `Context` receives the `WebContext`."""
