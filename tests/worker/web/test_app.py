"""The skeleton: health, JSON errors, security headers, tokens, the open local mode, sessions."""

from __future__ import annotations

import httpx2
import pytest
import redis.asyncio as aioredis
from fastapi import APIRouter, FastAPI

from jobs.errors import ConfigurationError
from worker.settings import load_settings
from worker.web import create_app
from worker.web.auth import Admin, Reader, bind_refusal
from worker.web.roles import Role, Tokens
from worker.web.session import SessionCodec

from .conftest import ADMIN, ADMIN_TOKEN, READ, READ_TOKEN, web_settings


async def test_healthz_needs_no_token_and_reports_redis(client: httpx2.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "redis": "ok"}


async def test_security_headers_on_every_response(client: httpx2.AsyncClient) -> None:
    for path in ("/healthz", "/no/such/page"):
        r = await client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"


async def test_unknown_path_and_method_are_json_errors_that_say_what_to_fix(
    client: httpx2.AsyncClient,
) -> None:
    r = await client.get("/v1/nothing", headers=ADMIN)
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "not_found" and "/docs" in error["fix"]
    r = await client.delete("/healthz")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


async def test_openapi_is_served(client: httpx2.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and r.json()["info"]["title"] == "invoicer"
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_bind_refusal_without_tokens_except_on_loopback() -> None:
    open_ = Tokens()
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert bind_refusal(host, open_) is None
    message = bind_refusal("0.0.0.0", open_)
    assert message is not None and "INVOICER_ADMIN_TOKEN" in message
    assert bind_refusal("0.0.0.0", Tokens(read="x" * 16)) is None


def test_roles_of_tokens() -> None:
    tokens = Tokens(admin=ADMIN_TOKEN, read=READ_TOKEN)
    assert tokens.role_of(ADMIN_TOKEN) is Role.ADMIN
    assert tokens.role_of(READ_TOKEN) is Role.READ
    assert tokens.role_of(ADMIN_TOKEN + "x") is None
    assert tokens.role_of("") is None


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("INVOICER_ADMIN_TOKEN", "short", "at least 16"),
        ("INVOICER_READ_TOKEN", "abcdefghijklmnop\u2019", "printable ASCII"),
        ("INVOICER_WEBHOOK_SECRET", "has a space in it!!", "printable ASCII"),
    ],
)
def test_bad_tokens_fail_at_load_naming_the_variable(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({variable: value}, env_file=None)
    assert variable in caught.value.message and expected in caught.value.message
    assert value not in caught.value.message


def test_equal_tokens_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="different values"):
        load_settings(
            {"INVOICER_ADMIN_TOKEN": ADMIN_TOKEN, "INVOICER_READ_TOKEN": ADMIN_TOKEN},
            env_file=None,
        )


def test_session_cookie_round_trip_forgery_and_expiry() -> None:
    codec = SessionCodec.of(Tokens(admin=ADMIN_TOKEN, read=READ_TOKEN))
    value, session = codec.issue(Role.READ, now=1000)
    assert codec.read(value, now=1001) == session
    assert ADMIN_TOKEN not in value and READ_TOKEN not in value
    payload, _, signature = value.partition(".")
    assert codec.read(payload + "." + signature[::-1], now=1001) is None
    assert codec.read(value, now=1000 + codec.max_age_s) is None
    other = SessionCodec.of(Tokens(admin=ADMIN_TOKEN + "2", read=READ_TOKEN))
    assert other.read(value, now=1001) is None  # a changed token ends every session


async def test_open_mode_refuses_foreign_hosts_and_cross_site_writes(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    settings = web_settings(redis_url, INVOICER_ADMIN_TOKEN="", INVOICER_READ_TOKEN="")
    app = create_app(settings, redis_client)
    probe = APIRouter()

    @probe.post("/probe")
    async def act(role: Admin) -> dict[str, str]:
        return {"role": role.name}

    app.include_router(probe)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
        assert (await c.post("/probe")).json() == {"role": "ADMIN"}
        rebinding = await c.post("/probe", headers={"Host": "evil.example:8000"})
        assert rebinding.status_code == 403 and "loopback" in rebinding.json()["error"]["message"]
        cross = await c.post("/probe", headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        fetch = await c.post("/probe", headers={"Sec-Fetch-Site": "cross-site"})
        assert fetch.status_code == 403
        same = await c.post("/probe", headers={"Origin": "http://127.0.0.1:8000"})
        assert same.status_code == 200


async def test_tokens_roles_and_sessions_on_a_route(app: object, settings: object) -> None:
    assert isinstance(app, FastAPI)
    probe = APIRouter()

    @probe.get("/probe")
    async def look(role: Reader) -> dict[str, str]:
        return {"role": role.name}

    @probe.post("/probe")
    async def act(role: Admin) -> dict[str, str]:
        return {"role": role.name}

    app.include_router(probe)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        none = await c.get("/probe")
        assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
        assert (await c.get("/probe", headers={"Authorization": "Bearer nope"})).status_code == 401
        assert (await c.get("/probe", headers={"Authorization": "Basic x"})).status_code == 401
        assert (await c.get("/probe", headers=READ)).json() == {"role": "READ"}
        refused = await c.post("/probe", headers=READ)
        assert refused.status_code == 403
        assert "INVOICER_ADMIN_TOKEN" in refused.json()["error"]["fix"]
        assert (await c.post("/probe", headers=ADMIN)).json() == {"role": "ADMIN"}
        # the dashboard's session: reads with the cookie, acts only with its CSRF token
        value, session = app.state.sessions.issue(Role.ADMIN)
        c.cookies.set("invoicer_session", value)
        assert (await c.get("/probe")).json() == {"role": "ADMIN"}
        assert (await c.post("/probe")).status_code == 403
        ok = await c.post("/probe", headers={"X-CSRF-Token": session.csrf})
        assert ok.json() == {"role": "ADMIN"}
