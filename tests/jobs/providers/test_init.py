"""The `jobs.providers` package: `make_provider` and `validator`."""

from __future__ import annotations

import pytest

from jobs.errors import InvoiceInvalid
from jobs.models import Provider
from jobs.providers import make_provider, validator
from jobs.providers.base import ProviderConfig
from jobs.providers.maast import MaastProvider
from jobs.providers.stax import StaxProvider
from tests.jobs.providers.conftest import maast_invoice


async def test_make_provider_builds_each_client() -> None:
    config = ProviderConfig(base_url="https://x.test", api_key="k")
    for provider, cls in [(Provider.MAAST, MaastProvider), (Provider.STAX, StaxProvider)]:
        client = make_provider(provider, config)
        assert isinstance(client, cls) and client.provider is provider
        await client.aclose()


@pytest.mark.parametrize("provider", list(Provider))
def test_validator_matches_the_client(provider: Provider) -> None:
    check = validator(provider)
    check(maast_invoice())  # valid at both
    with pytest.raises(InvoiceInvalid) as caught:
        check(maast_invoice(currency="JPY"))
    assert [f.field for f in caught.value.field_errors] == ["currency"]
