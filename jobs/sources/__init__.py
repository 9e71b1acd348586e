"""Read invoices from CSV and JSONL files: streaming, line-numbered, never half-accepted.

This module owns turning the bytes a person (or another system) wrote into
`Invoice` objects or readable `RecordError`s. It reads one physical line at a
time with a bounded `readline`, so memory follows the longest line and the
largest invoice, never the file size (it does remember every invoice number
it has seen, to catch duplicates: a few dozen bytes per invoice). It never
talks to a provider, Redis or the network, and it never raises for a bad
record: only a file that cannot be read at all raises `SourceError`. The
formats, limits and messages are documented in docs/input-formats.md.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from jobs.sources.csv_columns import COLUMNS, REQUIRED_COLUMNS
from jobs.sources.csv_reader import _read_csv
from jobs.sources.jsonl_reader import _read_jsonl, parse_json, read_objects
from jobs.sources.lines import _CELL_SEP, _FORMULA_IN_ROW, _physical_lines, _text_problem
from jobs.sources.records import (
    MAX_ERRORS_PER_RECORD,
    MAX_LINE_BYTES,
    MAX_LINES_PER_INVOICE,
    Format,
    Item,
    Record,
    RecordError,
    Source,
    SourceError,
)

__all__ = [
    "COLUMNS",
    "MAX_ERRORS_PER_RECORD",
    "MAX_LINES_PER_INVOICE",
    "MAX_LINE_BYTES",
    "REQUIRED_COLUMNS",
    "_CELL_SEP",
    "_FORMULA_IN_ROW",
    "Format",
    "Item",
    "Record",
    "RecordError",
    "Source",
    "SourceError",
    "_text_problem",
    "format_of",
    "parse_json",
    "read_invoices",
    "read_objects",
    "read_stream",
]

_SUFFIXES: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def read_invoices(
    path: Path,
    *,
    fmt: Format | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_lines_per_invoice: int = MAX_LINES_PER_INVOICE,
) -> Iterator[Item]:
    """Yield each record of `path` as a `Record` or one or more `RecordError`s, in file order.

    `fmt` defaults to the extension (.csv, .jsonl, .ndjson); the path "-" reads
    standard input and needs `fmt`. This is a generator: nothing is opened
    before the first `next()`. All `RecordError`s of one rejected invoice come
    together and carry its `invoice_number`. `max_lines_per_invoice` caps the
    CSV rows of one invoice (more is a `RecordError`).

    Raises:
        SourceError: the file cannot be opened or read, or its header is unusable.
    """
    path = Path(path)  # callers with a plain string get the same behaviour
    fmt = fmt or _format_of(path)
    if str(path) == "-":
        yield from read_stream(
            sys.stdin.buffer,
            fmt=fmt,
            max_line_bytes=max_line_bytes,
            max_lines_per_invoice=max_lines_per_invoice,
        )
        return
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror or exc}") from None
    with stream:
        yield from read_stream(
            stream,
            fmt=fmt,
            max_line_bytes=max_line_bytes,
            max_lines_per_invoice=max_lines_per_invoice,
        )


def read_stream(
    stream: BinaryIO,
    *,
    fmt: Format,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_lines_per_invoice: int = MAX_LINES_PER_INVOICE,
) -> Iterator[Item]:
    """Like `read_invoices`, from an open binary stream (which the caller closes).

    Raises:
        SourceError: as `read_invoices`; also when the stream holds no record
            at all (empty, only blank lines, a CSV header alone), whatever the
            format: an empty export is a mistake to report, not an empty batch.
    """
    lines = _physical_lines(stream, max_line_bytes)
    if fmt == "csv":
        items = _read_csv(lines, max_lines_per_invoice)
    elif fmt == "jsonl":
        items = _read_jsonl(lines)
    else:
        raise SourceError(f"unknown format {fmt!r}: use 'csv' or 'jsonl'")
    first = next(items, None)
    if first is None:
        raise SourceError(f"no invoices in it ({_EMPTY[fmt]})")
    yield first
    yield from items


_EMPTY: dict[str, str] = {
    "csv": "only a header, or blank lines",
    "jsonl": "it is empty, or holds only blank lines",
}


def format_of(path: Path) -> Format | None:
    """The format a file name says (.csv, .jsonl, .ndjson), or None."""
    return _SUFFIXES.get(path.suffix.lower())


def _format_of(path: Path) -> Format:
    if str(path) == "-":
        raise SourceError("reading standard input needs an explicit format (csv or jsonl)")
    found = format_of(path)
    if found is None:
        raise SourceError(
            f"cannot tell the format of {path.name!r} from its extension: "
            "use .csv, .jsonl or .ndjson, or give the format"
        )
    return found
