"""The provider clients: one `InvoiceProvider` per payment provider account.

`make_provider` is the one place a `Provider` value becomes a client; the
worker builds each client once per process and shares it between jobs.
"""

from __future__ import annotations

import httpx2 as httpx

from jobs.models import Provider
from jobs.ports import InvoiceProvider
from jobs.providers.base import ProviderConfig
from jobs.providers.maast import MaastProvider
from jobs.providers.stax import StaxProvider


def make_provider(
    provider: Provider,
    config: ProviderConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> InvoiceProvider:
    """The client for `provider`, with one shared HTTP client built from `config`.

    Args:
        transport: an httpx2 transport to use instead of aiohttp (tests pass
            `httpx.MockTransport`).
    """
    if provider is Provider.MAAST:
        return MaastProvider(config, transport=transport)
    return StaxProvider(config, transport=transport)


__all__ = ["MaastProvider", "ProviderConfig", "StaxProvider", "make_provider"]
