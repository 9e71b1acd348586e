"""`/docs` works offline: Swagger UI from our own static files, under the strict CSP.

Browser-free checks (every URL the page needs is same-origin and served, no
inline script, the vendored files are the recorded ones and ship in a
wheel), then a real browser (Debian's chromium) rendering the operations
with no CSP violation and no request off the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import re
import shutil
import tomllib
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx2
import pytest
import uvicorn
from fastapi import FastAPI

from worker.web.headers import CSP

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "worker" / "web"
VENDORED = WEB / "static" / "swagger-ui"
CHROMIUM = "/usr/bin/chromium"


class _Page(HTMLParser):
    """The URLs a page loads (script src, link href, img src) and its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self.attributes: dict[str, str] = {}
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.attributes.update({k: v for k, v in values.items() if k.startswith("data-")})
        for name in ("src", "href"):
            if name in values:
                self.urls.append(values[name])
        self._in_script = tag == "script" and "src" not in values

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def _same_origin(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")


async def test_docs_loads_only_same_origin_files_and_they_are_served(
    client: httpx2.AsyncClient,
) -> None:
    r = await client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    assert "unsafe-inline" not in CSP and "http" not in CSP
    page = _Page()
    page.feed(r.text)
    assert not page.inline_scripts, "an inline script would need 'unsafe-inline'"
    assert " style=" not in r.text and "cdn" not in r.text.lower()
    fetched = [u for u in page.urls if not u.startswith("data:")]
    assert len(fetched) == 3, page.urls  # the stylesheet, the bundle, our start-up file
    expected_types = {".css": "text/css", ".js": "text/javascript"}
    for url in fetched:
        assert _same_origin(url), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(expected_types[Path(url).suffix]), url
        assert len(asset.content) > 100, url
    openapi = page.attributes["data-openapi-url"]
    assert _same_origin(openapi)
    document = await client.get(openapi)
    assert document.status_code == 200 and "/v1/invoices" in document.json()["paths"]
    init = (await client.get("/static/swagger-ui/init.js")).text
    assert "data-openapi-url" in init and "validatorUrl: null" in init
    for path in ("/redoc", "/docs/oauth2-redirect"):
        assert (await client.get(path)).status_code == 404, path


def test_the_vendored_files_are_the_recorded_ones() -> None:
    note = (VENDORED / "VERSION").read_text()
    recorded = dict(re.findall(r"^\s+(\S+)\s+sha256 ([0-9a-f]{64})$", note, re.MULTILINE))
    assert set(recorded) == {"swagger-ui-bundle.js", "swagger-ui.css"}
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDORED / name).read_bytes()).hexdigest() == digest, name
    assert "Apache License" in (VENDORED / "LICENSE").read_text()
    assert "5.35.0" in note and (VENDORED / "NOTICE").exists()


def test_package_data_ships_every_static_file_and_template() -> None:
    """A wheel holds what the globs of pyproject.toml match: every file the web app serves."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["worker"]
    package = ROOT / "worker"
    needed = [
        p.relative_to(package).as_posix()
        for folder in (WEB / "static", WEB / "dashboard" / "templates")
        for p in folder.rglob("*")
        if p.is_file()
    ]
    assert any(n.startswith("web/static/swagger-ui/") for n in needed)
    # setuptools expands each pattern with glob.glob(recursive=True) in the package folder.
    shipped = {m for g in globs for m in glob.glob(g, root_dir=package, recursive=True)}
    missing = [n for n in needed if n not in shipped]
    assert not missing, f"not in the wheel: {missing}"


@contextlib.asynccontextmanager
async def _serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` on a real socket (a free port on 127.0.0.1), in this event loop."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian's chromium")
async def test_a_browser_renders_the_operations_with_no_csp_violation(app: FastAPI) -> None:
    from playwright.async_api import async_playwright

    async with _serving(app) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            console: list[str] = []
            requested: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("request", lambda r: requested.append(r.url))
            await page.goto(f"{base}/docs")
            await page.wait_for_selector(".opblock", timeout=20_000)
            assert await page.locator(".opblock").count() >= 15
            assert await page.get_by_text("/v1/dead-letters", exact=True).count() >= 1
        finally:
            await browser.close()
    assert not console, console  # a CSP refusal or a failed load shows here
    assert requested and all(u.startswith(base) for u in requested), requested
