"""`POST /v1/batches` with a form (`curl -F file=@x.csv`): streamed to disk, read as a file is."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import httpx2
import pytest
from starlette.requests import Request
from starlette.types import Message

from jobs.models import Provider
from worker import api
from worker.settings import Settings
from worker.web.upload import spooled

from .conftest import ADMIN

ROOT = Path(__file__).resolve().parents[3]
BOUNDARY = "invoicer-test-boundary-7f3a"
MB = 1024 * 1024
CHUNK = 64 * 1024
T = TypeVar("T")


def form_head(filename: str, content_type: str | None = None) -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return (head + "\r\n").encode()


FORM_TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()
FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def form(filename: str, data: bytes, content_type: str | None = None) -> bytes:
    return form_head(filename, content_type) + data + FORM_TAIL


async def upload(
    client: httpx2.AsyncClient, body: bytes | AsyncIterator[bytes], content_type: str = FORM_TYPE
) -> httpx2.Response:
    return await client.post(
        "/v1/batches",
        content=body,
        headers={**ADMIN, "Content-Type": content_type},
        params={"provider": "maast", "batch": "form"},
    )


def month_end(tmp_path: Path, count: int, invalid: int) -> Path:
    out = tmp_path / f"month-{count}.csv"
    script = ROOT / "samples" / "make_month_end.py"
    args = ["--count", str(count), "--invalid", str(invalid), "--out", str(out)]
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True)
    return out


async def test_a_form_upload_gives_the_per_line_errors_invoicer_enqueue_gives(
    client: httpx2.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    path = month_end(tmp_path, 30, 4)
    r = await upload(client, form("month.csv", path.read_bytes()))  # curl's octet-stream type
    assert r.status_code == 202, r.text
    body = r.json()
    cli = await api.enqueue_file(path, provider=Provider.MAAST, settings=settings)
    expected = [(e.line, e.field, e.invoice_number, e.message) for e in cli.invalid]
    got = [(p["line"], p["field"], p["invoice_number"], p["message"]) for p in body["rejected"]]
    assert got == expected and len(expected) >= 4
    assert body["accepted"] == 26 and body["rejected_count"] == len({e.line for e in cli.invalid})
    assert cli.duplicates == 26  # the upload enqueued exactly what the file holds


async def test_a_jsonl_form_file_is_known_by_its_type_or_its_name(
    client: httpx2.AsyncClient,
) -> None:
    line = (
        b'{"number": "J-1", "customer": {"id": "CUST0001", "first_name": "Ada", '
        b'"last_name": "L", "email": "a@x.io"}, "lines": [{"description": "Work", '
        b'"quantity": 1, "unit_price": "10.00"}], "invoice_date": "2026-10-31"}\n'
    )
    by_name = await upload(client, form("invoices.jsonl", line, "application/octet-stream"))
    assert by_name.status_code == 202 and by_name.json()["accepted"] == 1, by_name.text
    by_type = await upload(client, form("export.txt", line, "application/x-ndjson"))
    assert by_type.status_code == 202 and by_type.json()["duplicates"] == 1, by_type.text


async def test_a_form_that_is_not_one_file_is_refused_with_what_to_fix(
    client: httpx2.AsyncClient,
) -> None:
    field = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="provider"\r\n\r\nstax\r\n'
    cases: list[tuple[bytes, str, int, str]] = [
        (field.encode() + form("a.csv", b"x"), FORM_TYPE, 422, "query string"),
        (
            form("a.csv", b"x")[: -len(FORM_TAIL)] + b"\r\n" + form("b.csv", b"y"),
            FORM_TYPE,
            422,
            "more than one file",
        ),
        (f"--{BOUNDARY}--\r\n".encode(), FORM_TYPE, 422, "no file"),
        (form_head("a.csv") + b"invoice_number\r\n", FORM_TYPE, 400, "closing boundary"),
        (form("a.csv", b"x"), "multipart/form-data", 400, "no boundary"),
        (form("notes.txt", b"x", "text/plain"), FORM_TYPE, 415, ".csv or .jsonl"),
    ]
    for body, content_type, status, needle in cases:
        r = await upload(client, body, content_type)
        assert r.status_code == status, (needle, r.text)
        error = r.json()["error"]
        assert needle in error["message"] + error["fix"], (needle, error)


async def _chunks(head: bytes, size: int, tail: bytes, row: bytes) -> AsyncIterator[bytes]:
    """`head`, then `size` bytes of repeated `row`s in 64 KiB chunks, then `tail`: never
    more than one chunk in memory (a streaming client)."""
    yield head
    block = (row * (CHUNK // len(row) + 1))[:CHUNK]
    for _ in range(size // CHUNK):
        yield block
    yield tail


async def _peak_during(step: Awaitable[T]) -> tuple[T, int]:
    """What `step` returns and the most memory Python held while it ran."""
    tracemalloc.start()
    try:
        result = await step
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("as_form", [True, False], ids=["multipart", "raw body"])
async def test_memory_does_not_grow_with_the_upload(
    client: httpx2.AsyncClient, as_form: bool
) -> None:
    """A 3 MB and a 20 MB upload through the whole app (spooled to disk, then the
    reader refuses its header): the 20 MB one needs no more memory than the 3 MB one."""
    header = b"invoice_number,customer_id\n"  # a header the reader refuses: no enqueue cost
    peaks = {}
    for size in (3 * MB, 20 * MB):
        head = form_head("month.csv", "text/csv") + header if as_form else header
        tail = FORM_TAIL if as_form else b""
        body = _chunks(head, size, tail, b"INV-1,CUST0001\n")
        content_type = FORM_TYPE if as_form else "text/csv"
        response, peaks[size] = await _peak_during(upload(client, body, content_type))
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "unreadable_file"
    assert peaks[20 * MB] < peaks[3 * MB] + 1 * MB, peaks
    assert peaks[20 * MB] < 8 * MB, peaks


async def test_the_spooled_file_is_the_uploaded_file_byte_for_byte(tmp_path: Path) -> None:
    """20 MB through `spooled` as an ASGI server hands it over (64 KiB messages)."""
    row = b"INV-2,CUST0002,Ada,L\n"
    digest = hashlib.sha256()
    messages: list[Message] = []
    async for chunk in _chunks(form_head("big.csv"), 20 * MB, FORM_TAIL, row):
        messages.append({"type": "http.request", "body": chunk, "more_body": True})
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    for m in messages[1:-2]:
        digest.update(m["body"])

    async def receive() -> Message:
        return messages.pop(0)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/batches",
        "headers": [(b"content-type", FORM_TYPE.encode())],
        "query_string": b"",
    }
    async with spooled(Request(scope, receive)) as path:
        assert path.suffix == ".csv"
        written = hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.stat().st_size == 20 * MB
    assert written == digest.hexdigest()
    assert not path.exists()  # removed after
