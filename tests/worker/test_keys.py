"""Key names: the invoice key read back into its parts, one prefix for everything."""

from __future__ import annotations

import pytest

from jobs.models import Provider
from worker.keys import InvoiceKey, Keys, account_name, invoice_key


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("maast:INV-1", (Provider.MAAST, "default", "INV-1")),
        ("stax@eu:A/2026.1", (Provider.STAX, "eu", "A/2026.1")),
        ("maast@a:b:N-1", (Provider.MAAST, "a:b", "N-1")),
    ],
)
def test_invoice_keys_parse_into_their_parts_and_back(
    text: str, parts: tuple[Provider, str, str]
) -> None:
    key = InvoiceKey.parse(text)
    assert (key.provider, key.account, key.number) == parts
    assert str(key) == text == invoice_key(*parts)


@pytest.mark.parametrize("text", ["", "maast", "maast:", "paypal:INV-1", "maast@:INV-1", ":X"])
def test_what_is_not_an_invoice_key_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        InvoiceKey.parse(text)


def test_account_names_and_prefixed_keys() -> None:
    assert account_name(Provider.MAAST, "default") == "maast"
    assert account_name(Provider.STAX, "eu") == "stax@eu"
    keys = Keys("t:")
    assert keys.health(Provider.STAX) == "t:health:stax"
    assert keys.ledger("maast:A").startswith("t:")
