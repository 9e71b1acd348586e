"""Schemathesis against our OpenAPI, over ASGI on real Redis: no 500, and every refused
request gets a 4xx whose JSON body says what is wrong and what to fix.

Bounded (`CASES` examples in all, valid and invalid ones, the same share for
every operation) so it stays a few seconds of `make test`.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from worker.settings import load_settings
from worker.web import create_app

from .conftest import ADMIN

CASES = 300
"""Examples drawn in all, shared evenly by the operations (each one gets its own)."""

_SCHEMA = schemathesis.openapi.from_dict(
    create_app(load_settings({}, env_file=None), None).openapi()  # type: ignore[arg-type]
)
_OPERATIONS = [result.ok() for result in _SCHEMA.get_all_operations()]  # type: ignore[union-attr]
_STRATEGIES = {
    f"{op.method.upper()} {op.path}": st.one_of(
        *(op.as_strategy(generation_mode=mode) for mode in GenerationMode)
    )
    for op in _OPERATIONS
}
seen: list[tuple[str, str, int]] = []


def _request(case: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = case.as_transport_kwargs(base_url="http://127.0.0.1")
    headers = {k: v for k, v in kwargs.pop("headers", {}).items() if k.lower() != "authorization"}
    headers.update(ADMIN)
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "params": kwargs.get("params") or None,
        "headers": headers,
    }
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        request["content"] = data.encode() if isinstance(data, str) else data
    return request


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("operation", list(_STRATEGIES))
@settings(
    max_examples=CASES // len(_STRATEGIES),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,
)
@given(data=st.data())
async def test_no_500_and_every_4xx_says_what_to_fix(
    app: FastAPI, operation: str, data: st.DataObject
) -> None:
    case = data.draw(_STRATEGIES[operation])
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport) as client:
        r = await client.request(**_request(case))
    seen.append((case.method, case.path, r.status_code))
    assert r.status_code < 500, (case.method, case.formatted_path, r.status_code, r.text[:500])
    if r.status_code >= 400:
        error = r.json()["error"]
        assert error["status"] == r.status_code
        assert error["message"] and error["fix"], r.text


def test_the_fuzzing_reached_every_operation() -> None:
    # Runs after the fuzz test (file order): every operation got cases.
    if not seen:
        pytest.skip("run with the fuzz test")
    reached = {(m.upper(), p) for m, p, _ in seen}
    # Fewer than CASES: an operation with few possible requests (GET /healthz has
    # one) runs out of new ones before its share.
    assert len(seen) >= CASES * 0.7
    assert len(reached) == len(_OPERATIONS), (
        set((op.method.upper(), op.path) for op in _OPERATIONS) - reached
    )
