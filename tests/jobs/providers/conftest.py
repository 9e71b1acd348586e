"""Fixtures for the provider clients: a recording mock transport and sample invoices.

No network: every provider here talks to `httpx.MockTransport`, except the
transport tests in `test_base.py`, which use servers on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx2 as httpx
import pytest

from jobs.create_invoice import create_invoice
from jobs.models import Invoice, InvoiceReceipt
from jobs.ports import Claim, InvoiceProvider
from jobs.providers import make_provider
from jobs.providers.base import ProviderConfig
from jobs.providers.json_body import dumps, loads
from jobs.providers.maast import MaastProvider
from jobs.providers.stax import StaxProvider
from tests.fakes import FakeLedger, ImmediateLimiter

SEEDS = Path(__file__).parent / "seeds"
API_KEY = "9edec21a31c0xyz789e30a3416abc123"
"""The key of Maast's authentication worked example (docs/providers.md, Maast: Authentication)."""

Handler = Callable[[httpx.Request], httpx.Response]


def seed(name: str) -> object:
    """A seed JSON file, with fractional numbers as `Decimal`."""
    return loads((SEEDS / name).read_text(encoding="utf-8"))


def json_response(status: int, body: object, **headers: str) -> httpx.Response:
    """A response whose body is `body` as JSON (Decimals as exact numbers)."""
    text = dumps(body) if body is not None else ""
    return httpx.Response(status, content=text.encode(), headers=headers)


@dataclass
class Recorder:
    """A mock server: answers with `handler` and keeps every request it got."""

    handler: Handler
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def body(self, index: int = -1) -> object:
        """The JSON body of a request, numbers with fractions as `Decimal`."""
        return loads(self.requests[index].content)


def config(base_url: str = "https://provider.test") -> ProviderConfig:
    """A config with the worked-example key."""
    return ProviderConfig(base_url=base_url, api_key=API_KEY, read_timeout_s=5.0)


@pytest.fixture
async def maast_with() -> AsyncIterator[Callable[[Handler], tuple[MaastProvider, Recorder]]]:
    """Factory: a Maast client whose server is `handler`."""
    made: list[MaastProvider] = []

    def build(handler: Handler) -> tuple[MaastProvider, Recorder]:
        recorder = Recorder(handler)
        provider = MaastProvider(config(), transport=httpx.MockTransport(recorder))
        made.append(provider)
        return provider, recorder

    yield build
    for provider in made:
        await provider.aclose()


@pytest.fixture
async def stax_with() -> AsyncIterator[Callable[[Handler], tuple[StaxProvider, Recorder]]]:
    """Factory: a Stax client whose server is `handler`."""
    made: list[StaxProvider] = []

    def build(handler: Handler) -> tuple[StaxProvider, Recorder]:
        recorder = Recorder(handler)
        provider = make_provider(
            StaxProvider.provider, config(), transport=httpx.MockTransport(recorder)
        )
        assert isinstance(provider, StaxProvider)
        made.append(provider)
        return provider, recorder

    yield build
    for provider in made:
        await provider.aclose()


async def create_once(provider: InvoiceProvider, invoice: Invoice) -> InvoiceReceipt:
    """Create `invoice` as the worker does: through `create_invoice`, which
    validates first (a provider's `create` does not validate again)."""
    return await create_invoice(
        invoice, Claim(), provider=provider, ledger=FakeLedger(), limiter=ImmediateLimiter()
    )


def maast_invoice(**changes: object) -> Invoice:
    """A small valid Maast invoice."""
    fields: dict[str, object] = {
        "number": "INV-1",
        "customer": {
            "id": "CUST1",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.com",
        },
        "lines": [{"description": "Pencils", "quantity": 10, "unit_price": Decimal("1.49")}],
        "tax": {"kind": "rate", "value": Decimal("2.345")},
    }
    return Invoice.model_validate(fields | changes)


def stax_invoice(**changes: object) -> Invoice:
    """A small valid Stax invoice."""
    fields: dict[str, object] = {
        "number": "INV-1",
        "customer": {"id": "5a7f1c3e-0000-4000-8000-000000000001"},
        "lines": [
            {"description": "Pencils", "quantity": 10, "unit_price": Decimal("1.49")},
            {"description": "Pads", "name": "A4", "quantity": 2, "unit_price": Decimal("3.10")},
        ],
        "tax": {"kind": "amount", "value": Decimal("1.00")},
        "invoice_date": "2025-03-01",
    }
    return Invoice.model_validate(fields | changes)
