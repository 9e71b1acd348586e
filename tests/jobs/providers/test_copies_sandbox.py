"""`find_all`, `find`, `void` and `send_now` of the real clients against the
provider sandbox over HTTP (the aiohttp transport, as in production).

Two copies of one number, as a late commit leaves them: both are seen, one
is voided, and a lookup adopts the other, never the voided one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from jobs.errors import CannotVoid
from jobs.models import Invoice, Provider
from jobs.ports import InvoiceProvider
from jobs.providers import make_provider
from jobs.providers.base import ProviderConfig
from sandbox import DEFAULT_MAAST_KEY, DEFAULT_STAX_KEY, SandboxClient
from sandbox.client import ProviderName
from sandbox.copies import NumberCopies
from tests.jobs.providers.conftest import maast_invoice, stax_invoice

KEYS = {Provider.MAAST: DEFAULT_MAAST_KEY, Provider.STAX: DEFAULT_STAX_KEY}


@pytest.fixture
async def client(
    request: pytest.FixtureRequest, sandbox_url: str, sandbox: SandboxClient
) -> AsyncIterator[InvoiceProvider]:
    """The real client of the parametrized provider, pointed at the (reset) sandbox."""
    provider: Provider = request.param
    made = make_provider(provider, ProviderConfig(base_url=sandbox_url, api_key=KEYS[provider]))
    yield made
    await made.aclose()


def invoice_for(provider: Provider, number: str = "DUP-1", *, send: bool = False) -> Invoice:
    make = maast_invoice if provider is Provider.MAAST else stax_invoice
    return make(number=number, send=send)


def name_of(provider: Provider) -> ProviderName:
    return "maast" if provider is Provider.MAAST else "stax"


@pytest.mark.parametrize("client", [Provider.MAAST, Provider.STAX], indirect=True)
async def test_two_copies_one_voided_the_other_found(
    client: InvoiceProvider, sandbox: SandboxClient
) -> None:
    invoice = invoice_for(client.provider)
    first = await client.create(invoice, send_now=False)
    second = await client.create(invoice, send_now=False)
    copies = await client.find_all(invoice)
    assert [c.provider_id for c in copies] == [first.provider_id, second.provider_id]
    assert not any(c.voided or c.sent for c in copies)

    voided = await client.void(first)
    assert voided.voided and voided.provider_id == first.provider_id
    again = await client.void(first)  # the answer of a void lost, the void retried
    assert again.voided

    found = await client.find(invoice)
    assert found is not None and found.provider_id == second.provider_id
    assert [c.voided for c in await client.find_all(invoice)] == [True, False]
    copies_there = await sandbox.copies(name_of(client.provider))
    assert copies_there == {"DUP-1": NumberCopies(created=2, live=1, sent=0)}

    await client.void(second)
    assert await client.find(invoice) is None  # nothing live: never adopt a voided copy


@pytest.mark.parametrize("client", [Provider.MAAST, Provider.STAX], indirect=True)
async def test_a_paid_copy_cannot_be_voided(
    client: InvoiceProvider, sandbox: SandboxClient
) -> None:
    invoice = invoice_for(client.provider, "PAID-1")
    receipt = await client.create(invoice, send_now=False)
    sent = await client.send(receipt, invoice)
    await sandbox.pay(name_of(client.provider), receipt.provider_id)
    with pytest.raises(CannotVoid) as caught:
        await client.void(sent)
    assert caught.value.invoice_status == "PAID"
    found = await client.find(invoice)
    assert found is not None and found.sent and not found.voided


@pytest.mark.parametrize("client", [Provider.STAX], indirect=True)
async def test_stax_send_now_is_the_callers_choice(
    client: InvoiceProvider, sandbox: SandboxClient
) -> None:
    asks = invoice_for(Provider.STAX, "SN-1", send=True)
    draft = await client.create(asks, send_now=False)
    assert (draft.status, draft.sent) == ("DRAFT", False)
    sent = await client.create(invoice_for(Provider.STAX, "SN-2"), send_now=True)
    assert (sent.status, sent.sent) == ("SENT", True)
    assert (await sandbox.copies_summary("stax")).sent == 1
