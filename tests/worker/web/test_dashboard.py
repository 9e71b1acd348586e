"""The dashboard's pages over ASGI against real Redis: login, each tab, actions, roles, CSRF."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import httpx2
import redis.asyncio as aioredis

from jobs.models import Provider
from tests.worker.support import ROOT
from worker import api
from worker.dlq import DeadLetters
from worker.ledger import Ledger, State
from worker.pauses import pause_provider
from worker.settings import Settings
from worker.web import create_app

from .conftest import ADMIN_TOKEN, READ_TOKEN, web_settings
from .dashboard_support import KEYS, UNAVAILABLE, create, csrf_of, login, park, seed

PAGES = ("/", "/overview/live", "/batches", "/batches/live", "/dead-letters", "/invoices")


async def test_pages_send_a_person_without_a_session_to_the_login_page(
    client: httpx2.AsyncClient,
) -> None:
    for path in PAGES:
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    r = await client.get("/dead-letters?reason=x")
    assert r.headers["location"] == "/login?next=%2Fdead-letters%3Freason%3Dx"
    polled = await client.get("/overview/live", headers={"HX-Request": "true"})
    assert (
        polled.status_code == 401
        and polled.headers["hx-redirect"] == "/login?next=%2Foverview%2Flive"
    )


async def test_login_checks_the_token_and_the_form_and_sets_an_http_only_cookie(
    client: httpx2.AsyncClient,
) -> None:
    form = await client.get("/login?next=/batches")
    token_field = csrf_of(form.text)
    bad = await client.post(
        "/login", data={"token": "wrong-token-000000", "csrf_token": token_field}
    )
    assert bad.status_code == 401 and "not a token this server accepts" in bad.text
    assert "invoicer_session" not in bad.headers.get("set-cookie", "")

    client.cookies.clear()  # no login cookie: the form did not come from us
    forged = await client.post("/login", data={"token": ADMIN_TOKEN, "csrf_token": token_field})
    assert forged.status_code == 403 and "invoicer_session" not in forged.headers.get(
        "set-cookie", ""
    )

    form = await client.get("/login")
    ok = await client.post(
        "/login",
        data={"token": ADMIN_TOKEN, "csrf_token": csrf_of(form.text), "next": "//evil.example/"},
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = ok.headers["set-cookie"].lower()
    assert "invoicer_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert ADMIN_TOKEN not in ok.headers["set-cookie"]
    assert (await client.get("/login")).status_code == 303  # logged in: straight on

    page = await client.get("/")
    out = await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert (await client.get("/")).status_code == 303


async def test_overview_shows_each_provider_its_queue_and_the_workers(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis
) -> None:
    await seed(redis_client, ["A-1", "A-2", "A-3"])
    await create(redis_client, "A-1")
    await park(redis_client, "A-2")
    await login(client, ADMIN_TOKEN)
    page = (await client.get("/")).text
    assert 'id="provider-maast"' in page and 'id="provider-stax"' in page
    assert 'data-k="queued">1<' in page and 'data-k="in_doubt">0<' in page
    maast = page.split('id="provider-maast"')[1].split('id="provider-stax"')[0]
    assert 'data-k="remaining">1<' in maast and 'data-k="eta">' in maast
    assert "failure budget left" in page and "of 8 this minute" in page  # Stax's default budget
    assert "limit 100/min" in page  # Stax's rate limit line on its chart
    assert 'class="bar-created"' in page and 'class="bar-rejected"' in page
    assert "No worker has reported" in page
    assert 'id="refused"' not in page
    await redis_client.lpush(KEYS.refused_jobs(), json.dumps({"job_id": "x"}))  # type: ignore[misc]
    assert "<strong>1</strong> malformed jobs refused" in (await client.get("/")).text
    now_ms = int(time.time() * 1000)
    for worker_id, beat_ms in (("web1:11:aa", now_ms - 1_000), ("web2:22:bb", now_ms - 60_000)):
        record = {
            "host": worker_id.split(":")[0],
            "pid": int(worker_id.split(":")[1]),
            "queues": ["maast"],
            "last_beat_ms": beat_ms,
            "started_at_ms": now_ms - 120_000,
            "holding": 3,
        }
        await redis_client.hset(KEYS.workers(), worker_id, json.dumps(record))  # type: ignore[misc]
    live = await client.get("/overview/live")
    assert live.status_code == 200 and "<html" not in live.text
    assert "1 alive" in live.text
    rows = live.text.split('id="workers"')[1]
    assert rows.index("web1:11") < rows.index("badge alive") < rows.index("web2:22")
    assert rows.index("web2:22") < rows.index("badge dead") and "1m ago" in rows
    assert 'hx-get="/overview/live"' in live.text and 'hx-trigger="every 2s"' in live.text


async def test_pause_and_resume_from_the_overview(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis
) -> None:
    csrf = await login(client, ADMIN_TOKEN)
    r = await client.post("/providers/stax/pause", data={"csrf_token": csrf})
    assert r.status_code == 303
    page = (await client.get("/")).text
    assert "stax: paused" in page and "paused from the dashboard" in page
    assert 'action="/providers/stax/resume"' in page
    r = await client.post("/providers/stax/resume", data={"csrf_token": csrf})
    assert "stax: resumed" in (await client.get("/")).text


async def test_every_action_needs_the_page_csrf_token(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis
) -> None:
    batch = await seed(redis_client, ["C-1"])
    await login(client, ADMIN_TOKEN)
    for path in ("/providers/maast/pause", f"/batches/{batch}/cancel", "/dead-letters/requeue-all"):
        missing = await client.post(path)
        assert missing.status_code == 403 and missing.json()["error"]["code"] == "csrf_failed", path
        wrong = await client.post(path, data={"csrf_token": "not-the-token"})
        assert wrong.status_code == 403, path
    record = await Ledger(redis_client, KEYS).get("maast:C-1")
    assert record is not None and record.state is State.QUEUED


async def test_the_read_token_sees_everything_and_cannot_act(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis
) -> None:
    batch = await seed(redis_client, ["R-1", "R-2"])
    key = await park(redis_client, "R-2")
    await pause_provider(redis_client, KEYS, Provider.MAAST, "default", "by hand")
    csrf = await login(client, READ_TOKEN)
    pages = {
        "/": "Resume maast",
        f"/batches/{batch}": "Cancel the batch",
        "/dead-letters": "Requeue selected",
        f"/dead-letters/{key}": "Requeue with this payload",
    }
    for path, button in pages.items():
        page = (await client.get(path)).text
        assert "read only" in page and button not in page, path
    for path in (
        "/providers/maast/resume",
        f"/batches/{batch}/cancel",
        f"/dead-letters/{key}/requeue",
        f"/dead-letters/{key}/discard",
        "/dead-letters/requeue-all",
    ):
        r = await client.post(path, data={"csrf_token": csrf})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", path
    assert await DeadLetters(redis_client, KEYS).count() == 1
    record = await Ledger(redis_client, KEYS).get("maast:R-1")
    assert record is not None and record.state is State.QUEUED


async def test_batches_list_and_page_show_progress_and_cancel(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis
) -> None:
    batch = await seed(redis_client, [f"B-{i}" for i in range(4)], batch="november")
    await create(redis_client, "B-0")
    csrf = await login(client, ADMIN_TOKEN)
    listing = (await client.get("/batches")).text
    assert f'href="/batches/{batch}"' in listing and "november" in listing
    assert 'value="1" max="4"' in listing
    page = (await client.get(f"/batches/{batch}")).text
    assert 'id="batch-progress" value="1" max="4"' in page and "25%" in page
    assert f'href="/v1/batches/{batch}/report.csv"' in page
    assert 'data-state="queued">3<' in page
    assert 'id="voided"' not in page
    await redis_client.hset(KEYS.batch(batch), "voided", "2")  # type: ignore[misc]
    live = (await client.get(f"/batches/{batch}/live")).text
    assert "voided: <strong>2</strong>" in live and "<html" not in live
    assert 'id="duplicates-open"' not in live
    await redis_client.hset(KEYS.batch(batch), "duplicates_open", "1")  # type: ignore[misc]
    assert (
        "could not be voided): <strong>1</strong>" in (await client.get(f"/batches/{batch}")).text
    )

    r = await client.post(f"/batches/{batch}/cancel", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/batches/{batch}"
    page = (await client.get(f"/batches/{batch}")).text
    assert f"batch {batch}: 3 invoices cancelled" in page
    assert 'data-state="discarded">3<' in page and 'id="cancelled"' in page
    report = await client.get(f"/v1/batches/{batch}/report.csv")  # the session may read it
    assert report.status_code == 200 and report.text.count("\n") == 5
    assert (await client.get("/batches/no-such-batch")).status_code == 404


async def test_dead_letters_are_grouped_by_reason_and_shown_beside_the_payload(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis
) -> None:
    batch = await seed(redis_client, ["D-1", "D-2", "D-3"])
    await park(redis_client, "D-1")
    await park(redis_client, "D-2")
    await park(redis_client, "D-3", UNAVAILABLE)
    await login(client, ADMIN_TOKEN)
    page = (await client.get("/dead-letters")).text
    assert 'data-reason="rejected"' in page and "rejected <b>2</b>" in page
    assert "exhausted <b>1</b>" in page and "all <b>3</b>" in page
    only = (await client.get("/dead-letters?reason=exhausted")).text
    assert 'data-key="maast:D-3"' in only and 'data-key="maast:D-1"' not in only
    by_batch = (await client.get(f"/dead-letters?batch={batch}&reason=rejected")).text
    assert by_batch.count('<tr data-key="') == 2

    detail = (await client.get("/dead-letters/maast:D-1")).text
    # The payload as `dlq show --payload-only` prints it (quotes escaped in the HTML).
    assert "&#34;number&#34;: &#34;D-1&#34;" in detail
    assert "HTTP 422" in detail and "code E42" in detail and "no such customer" in detail
    assert "=HYPERLINK(&#34;http://evil&#34;)" in detail  # escaped text, never markup
    assert "enqueued" in detail and "dead-lettered" in detail  # the history


async def test_an_edited_payload_is_checked_then_requeued_and_leaves_the_list(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis
) -> None:
    await seed(redis_client, ["E-1", "E-2"])
    key = await park(redis_client, "E-1")
    await park(redis_client, "E-2")
    csrf = await login(client, ADMIN_TOKEN)
    stored = json.loads((await DeadLetters(redis_client, KEYS).get(key)).payload)  # type: ignore[union-attr]

    broken = {**stored, "lines": [{**stored["lines"][0], "quantity": "-2"}]}
    r = await client.post(
        f"/dead-letters/{key}/requeue", data={"csrf_token": csrf, "payload": json.dumps(broken)}
    )
    assert r.status_code == 422 and "lines[0].quantity" in r.text and "Not requeued" in r.text
    r = await client.post(
        f"/dead-letters/{key}/requeue", data={"csrf_token": csrf, "payload": "{not json"}
    )
    assert r.status_code == 422 and "not valid JSON" in r.text
    other = {**stored, "number": "E-99"}
    r = await client.post(
        f"/dead-letters/{key}/requeue", data={"csrf_token": csrf, "payload": json.dumps(other)}
    )
    assert r.status_code == 422 and "E-99" in r.text
    assert await DeadLetters(redis_client, KEYS).get(key) is not None

    fixed = {**stored, "lines": [{**stored["lines"][0], "quantity": "3"}]}
    r = await client.post(
        f"/dead-letters/{key}/requeue", data={"csrf_token": csrf, "payload": json.dumps(fixed)}
    )
    assert r.status_code == 303 and r.headers["location"] == "/dead-letters"
    page = (await client.get("/dead-letters")).text
    assert f"{key}: requeued" in page and f'data-key="{key}"' not in page
    record = await Ledger(redis_client, KEYS).get(key)
    assert record is not None and record.state is State.QUEUED and record.generation == 2
    assert json.loads(record.payload)["lines"][0]["quantity"] == "3"


async def test_bulk_requeue_discard_and_export(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis
) -> None:
    await seed(redis_client, [f"K-{i}" for i in range(5)])
    for i in range(4):
        await park(redis_client, f"K-{i}")
    await park(redis_client, "K-4", UNAVAILABLE)
    csrf = await login(client, ADMIN_TOKEN)
    export = await client.get("/dead-letters/export.csv?reason=rejected")
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == 4 and all(row["message"].startswith("'=HYPERLINK") for row in rows)

    r = await client.post(
        "/dead-letters/requeue",
        data={"csrf_token": csrf, "key": ["maast:K-0", "maast:K-1"], "back_to": "/dead-letters"},
    )
    assert r.status_code == 303
    assert "2 requeued" in (await client.get("/dead-letters")).text
    await client.post("/dead-letters/discard", data={"csrf_token": csrf, "key": ["maast:K-2"]})
    r = await client.post(
        "/dead-letters/requeue-all", data={"csrf_token": csrf, "reason": "exhausted"}
    )
    assert r.headers["location"] == "/dead-letters?reason=exhausted"
    queue = DeadLetters(redis_client, KEYS)
    assert await queue.reason_counts() == {"rejected": 1}
    await client.post("/dead-letters/discard-all", data={"csrf_token": csrf})
    assert await queue.count() == 0
    discarded = await Ledger(redis_client, KEYS).get("maast:K-3")
    assert discarded is not None and discarded.state is State.DISCARDED


async def test_search_shows_the_whole_timeline_of_a_number(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis
) -> None:
    await seed(redis_client, ["S-1"])
    await create(redis_client, "S-1")
    await login(client, ADMIN_TOKEN)
    page = (await client.get("/invoices?number=S-1")).text
    assert 'id="invoice-maast:S-1"' in page and "p-S-1" in page
    events = page.split("Timeline")[1]
    assert events.index("enqueued") < events.index("sending") < events.index("created")
    assert 'id="invoice-maast:S-1"' in (await client.get("/invoices?number=maast:S-1")).text
    assert 'id="not-found"' in (await client.get("/invoices?number=NOPE")).text


async def test_no_page_ever_shows_a_key_a_token_or_the_redis_password(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    secrets = {
        "MAAST_API_KEY": "maast-key-SECRET-0001",
        "STAX_API_KEY": "stax-key-SECRET-0002",
        "SENTRY_DSN": "https://sentrykeySECRET3@sentry.example/1",
        "INVOICER_WEBHOOK_SECRET": "whsec-SECRET-000000004",
    }
    redis_password = "redisPASSWORD0005"
    settings = web_settings(redis_url.replace("redis://", f"redis://:{redis_password}@"), **secrets)
    app = create_app(settings, redis_client)  # the client is the test's: the URL is only shown
    batch = await seed(redis_client, ["X-1", "X-2"])
    key = await park(redis_client, "X-1")
    await redis_client.hset(  # type: ignore[misc]
        KEYS.batch(batch), "callback_url", "https://user:hookpass0006@hooks.example/in"
    )
    paths = [
        "/",
        "/overview/live",
        "/batches",
        "/batches/live",
        f"/batches/{batch}",
        f"/batches/{batch}/live",
        "/dead-letters",
        f"/dead-letters/{key}",
        "/dead-letters/export.csv",
        "/invoices?number=X-1",
        "/invoices?number=X-2",
        "/batches/nope",
        "/dead-letters/maast:nope",
    ]
    forbidden = [*secrets.values(), redis_password, ADMIN_TOKEN, READ_TOKEN, "hookpass0006"]
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        login_page = await client.get("/login")
        shown = [login_page.text]
        for token in (ADMIN_TOKEN, READ_TOKEN):
            client.cookies.clear()
            await login(client, token)
            for path in paths:
                r = await client.get(path)
                assert r.status_code == (404 if "nope" in path else 200), path
                shown.append(r.text + json.dumps(dict(r.headers)))
        failed = await client.post(
            "/login", data={"token": ADMIN_TOKEN + "x", "csrf_token": csrf_of(login_page.text)}
        )
        shown.append(failed.text)
    for text in shown:
        for secret in forbidden:
            assert secret not in text
    assert any("hooks.example" in text for text in shown)  # the URL is shown, its password not


async def test_pages_carry_the_security_headers_and_no_inline_script(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis
) -> None:
    await login(client, ADMIN_TOKEN)
    for path in ("/", "/login", "/batches", "/dead-letters"):
        r = await client.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
        assert "<script>" not in r.text and " style=" not in r.text and "onclick" not in r.text
    static = await client.get("/static/htmx.min.js")
    assert static.status_code == 200 and "htmx" in static.text[:200]


async def test_open_local_mode_needs_no_login_but_still_a_csrf_token(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    settings = web_settings(redis_url, INVOICER_ADMIN_TOKEN="", INVOICER_READ_TOKEN="")
    app = create_app(settings, redis_client)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        first = await client.get("/")
        assert first.status_code == 200 and "local, no login" in first.text
        assert "invoicer_session=" in first.headers["set-cookie"]
        assert (await client.get("/login")).status_code == 303
        no_csrf = await client.post("/providers/maast/pause")
        assert no_csrf.status_code == 403
        ok = await client.post("/providers/maast/pause", data={"csrf_token": csrf_of(first.text)})
        assert ok.status_code == 303
        rebound = await client.get("/", headers={"Host": "evil.example"})
        assert rebound.status_code == 403
        cross = await client.post(
            "/providers/maast/resume",
            data={"csrf_token": csrf_of(first.text)},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403


async def test_records_refused_at_enqueue_show_their_rows_and_export_in_the_input_format(
    client: httpx2.AsyncClient, redis_client: aioredis.Redis, settings: Settings, tmp_path: Path
) -> None:
    header, good, _ = (ROOT / "samples" / "small.csv").read_text().split("\n", 2)
    bad_quantity = good.replace("INV-S-0001", "BAD-1").replace(",10,1.49", ",-3,1.49")
    formula = good.replace("INV-S-0001", "BAD-2").replace('"Pencils HB, pack of 12"', "=cmd()")
    source = tmp_path / "month.csv"
    source.write_text("\n".join([header, good, bad_quantity, formula]) + "\n")
    report = await api.enqueue_file(
        source, provider=Provider.MAAST, settings=settings, redis=redis_client
    )
    await login(client, ADMIN_TOKEN)
    detail = (await client.get("/dead-letters/maast:BAD-1")).text
    assert 'id="source"' in detail and "as written (csv, line" in detail.lower()
    assert "3: BAD-1," in detail and header[:40] in detail

    rows = await client.get(f"/dead-letters/rows-to-fix?batch={report.batch_id}")
    assert rows.status_code == 200 and rows.headers["content-type"].startswith("text/csv")
    assert 'filename="rows-to-fix-' in rows.headers["content-disposition"]
    lines = rows.text.splitlines()
    assert lines[0] == header and len(lines) == 3
    assert lines[1].startswith("BAD-1,") and ",-3," in lines[1]
    assert "'=cmd()" in lines[2] and ",=cmd()" not in lines[2]  # a formula cell defused

    await seed(redis_client, ["P-1"])
    await park(redis_client, "P-1")  # rejected by the provider: it has a payload, no rows
    empty = await client.get("/dead-letters/rows-to-fix?reason=rejected")
    assert empty.status_code == 303
    assert "none of these dead letters holds rows" in (await client.get("/dead-letters")).text
