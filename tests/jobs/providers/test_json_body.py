"""Exact-Decimal JSON: what `dumps` writes and refuses, and `loads` reading it back."""

from __future__ import annotations

from decimal import Decimal

import pytest

from jobs.providers.json_body import dumps, loads


def test_dumps_writes_decimals_exactly() -> None:
    body = {"a": Decimal("0.10"), "b": Decimal("12345678.99"), "c": [1, True, None, "é"]}
    text = dumps(body)
    assert text == '{"a":0.10,"b":12345678.99,"c":[1,true,null,"é"]}'
    assert loads(text) == body


def test_dumps_refuses_what_is_not_json() -> None:
    with pytest.raises(ValueError):
        dumps(Decimal("NaN"))
    with pytest.raises(TypeError):
        dumps(object())
