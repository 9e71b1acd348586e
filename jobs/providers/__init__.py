"""The provider clients: one `InvoiceProvider` per payment provider account.

`make_provider` is the one place a `Provider` value becomes a client; the
worker builds each client once per process and shares it between jobs.
`validator` gives the same local checks without a client or an API key, for
refusing records before they are enqueued.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx2 as httpx

from jobs.models import Invoice, Provider
from jobs.ports import InvoiceProvider
from jobs.providers import maast_checks, stax_body
from jobs.providers.answers import refuse_problems
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


def validator(provider: Provider) -> Callable[[Invoice], None]:
    """`provider`'s local validation (the same as its client's `validate`).

    The returned function raises `InvoiceInvalid` listing every problem.
    """
    problems_of = (
        maast_checks.invoice_problems if provider is Provider.MAAST else stax_body.invoice_problems
    )
    name = "Maast" if provider is Provider.MAAST else "Stax"

    def validate(invoice: Invoice) -> None:
        refuse_problems(invoice.number, problems_of(invoice), name)

    return validate


__all__ = ["MaastProvider", "ProviderConfig", "StaxProvider", "make_provider", "validator"]
