"""An uploaded file to a temporary file on disk, chunk by chunk: memory never grows with it.

`POST /v1/batches` takes the file either as the raw request body
(`Content-Type: text/csv` or `application/x-ndjson`) or as the one file part
of a `multipart/form-data` body (an HTML form, `curl -F file=@month.csv`).
Both are written to disk as the request's chunks arrive (a multipart body
through python-multipart's streaming parser: only the part's bytes are
kept, never the body); the route then reads the file exactly as
`invoicer enqueue FILE` does. Settings stay in the query string: a form
field other than the file is refused, so `-F provider=stax` cannot be
silently ignored.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, BinaryIO, Literal

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

from worker.web.errors import ApiError

Format = Literal["csv", "jsonl"]

MAX_UPLOAD_BYTES = 1024 * 1024 * 1024
"""Largest file accepted (it is written to a temporary file, never held in memory)."""
FORMATS: dict[str, Format] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
}
"""Media types of a raw body (or of a file part) and the format they mean."""
SUFFIXES: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
"""A file part's name suffix, when its media type says nothing (curl sends octet-stream)."""
MULTIPART = "multipart/form-data"


@contextlib.asynccontextmanager
async def spooled(request: Request) -> AsyncIterator[Path]:
    """The uploaded file on disk, named `*.csv` or `*.jsonl` by its format; removed after.

    Raises:
        ApiError: 415 (not a CSV or JSONL file, nor a form holding one),
            413 (larger than `MAX_UPLOAD_BYTES`), 400/422 (a broken or empty form).
    """
    media_type, params = _media_type(request.headers.get("content-type", ""))
    fd, name = tempfile.mkstemp(prefix="invoicer-upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            if media_type == MULTIPART:
                fmt = await _from_form(request, params, out)
            else:
                fmt = _format_of(media_type)
                await _copy(request, out)
        path = Path(f"{name}.{fmt}")
        os.rename(name, path)
        name = str(path)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


async def _copy(request: Request, out: BinaryIO) -> None:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        _check_size(size)
        out.write(chunk)


class _FilePart:
    """python-multipart callbacks: the form's one file part written to `out` as it comes."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.filename: str | None = None
        self.content_type = ""
        self.size = 0
        self.complete = False
        """The closing boundary was read (a body cut short must not enqueue half a file)."""
        self._writing = False
        self._name = self._value = b""
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_name,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_end": self._end,
        }

    def _begin(self) -> None:
        self._headers = {}
        self._writing = False

    def _header_name(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._name.lower()] = self._value
        self._name = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        field = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            raise ApiError(
                422,
                "invalid_form",
                f"the form field {field!r} is not a file",
                fix="send only the file in the form; put provider, batch, send, callback_url "
                "and notify in the query string",
                problems=[{"field": field or "form", "message": "not a file"}],
            )
        if self.filename is not None:
            raise ApiError(
                422,
                "invalid_form",
                "the form holds more than one file",
                fix="upload one file per request",
                problems=[{"field": field, "message": "a second file"}],
            )
        self.filename = options[b"filename"].decode("utf-8", "replace")
        self.content_type = self._headers.get(b"content-type", b"").decode("latin-1")
        self._writing = True

    def _end(self) -> None:
        self.complete = True

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._writing:
            self.size += end - start
            _check_size(self.size)
            self.out.write(data[start:end])


async def _from_form(request: Request, params: dict[bytes, bytes], out: BinaryIO) -> Format:
    """The form's file part written to `out`; its format."""
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "invalid_form", "the multipart body has no boundary", fix=_FORM_FIX)
    part = _FilePart(out)
    try:
        parser = MultipartParser(boundary, part.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise ApiError(
            400, "invalid_form", f"the multipart body is broken: {exc}", fix=_FORM_FIX
        ) from None
    if not part.complete:
        raise ApiError(
            400,
            "invalid_form",
            "the multipart body ends before its closing boundary",
            fix=_FORM_FIX,
        )
    if part.filename is None:
        raise ApiError(
            422,
            "invalid_form",
            "the form holds no file",
            fix=_FORM_FIX,
            problems=[{"field": "file", "message": "missing"}],
        )
    return _format_of_part(part.content_type, part.filename)


_FORM_FIX = "send the file as a form's file field: curl -F file=@month.csv"


def _media_type(header: str) -> tuple[str, dict[bytes, bytes]]:
    value, params = parse_options_header(header)
    return value.decode("latin-1").lower(), params


def _format_of(media_type: str) -> Format:
    found = FORMATS.get(media_type)
    if found is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"cannot read a body of type {media_type or '(none)'!r}",
            fix="send the file as the body with Content-Type text/csv or application/x-ndjson, "
            "or as a multipart/form-data file field (curl -F file=@month.csv)",
        )
    return found


def _format_of_part(content_type: str, filename: str) -> Format:
    by_type = FORMATS.get(_media_type(content_type)[0])
    by_name = SUFFIXES.get(PurePath(filename).suffix.lower())
    found = by_type or by_name
    if found is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"cannot tell the format of the file {filename!r} ({content_type or 'no type'})",
            fix="name the file .csv or .jsonl, or give its type: -F 'file=@x;type=text/csv'",
        )
    return found


def _check_size(size: int) -> None:
    if size > MAX_UPLOAD_BYTES:
        raise ApiError(413, "too_large", "the file is larger than 1 GiB", fix="split it")
