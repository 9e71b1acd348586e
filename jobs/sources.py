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

import csv
import dataclasses
import difflib
import importlib
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple, cast

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from jobs.errors import InvoiceError
from jobs.models import Invoice, Provider

Format = Literal["csv", "jsonl"]

MAX_LINE_BYTES = 1024 * 1024
"""Longest physical line accepted; a longer one is a `RecordError`, read in bounded chunks."""
MAX_LINES_PER_INVOICE = 1000
"""Most CSV rows one invoice may have; bounds the memory one invoice can take."""
MAX_ERRORS_PER_RECORD = 20
"""Errors reported for one record before the rest are summed up in one more."""

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SUFFIXES: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class Record:
    """One invoice read whole and valid."""

    line: int
    """First line of the record (1-based; the CSV header is line 1)."""
    invoice: Invoice
    provider: Provider | None = None
    """Set when a JSONL line held a provider create body (`"provider": "maast"|"stax"`)."""


@dataclass(frozen=True)
class RecordError:
    """One problem with one record; an invoice with any problem is rejected whole."""

    line: int
    message: str
    field: str | None = None
    """CSV column name, or JSON path (`lines[0].quantity`) for JSONL."""
    invoice_number: str | None = None
    invoice: Invoice | None = dataclasses.field(default=None, compare=False, repr=False)
    """The parsed invoice, when it parsed but failed a provider's own rules."""

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.invoice_number:
            where += f" (invoice {self.invoice_number})"
        if self.field:
            where += f" field {self.field}"
        return f"{where}: {self.message}"


class SourceError(Exception):
    """The whole file cannot be read (unknown/duplicate columns, not UTF-8, unknown format...)."""


Item = Record | RecordError


def read_invoices(
    path: Path, *, fmt: Format | None = None, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[Item]:
    """Yield each record of `path` as a `Record` or one or more `RecordError`s, in file order.

    `fmt` defaults to the extension (.csv, .jsonl, .ndjson); the path "-" reads
    standard input and needs `fmt`. This is a generator: nothing is opened
    before the first `next()`. All `RecordError`s of one rejected invoice come
    together and carry its `invoice_number`.

    Raises:
        SourceError: the file cannot be opened or read, or its header is unusable.
    """
    path = Path(path)  # callers with a plain string get the same behaviour
    fmt = fmt or _format_of(path)
    if str(path) == "-":
        yield from read_stream(sys.stdin.buffer, fmt=fmt, max_line_bytes=max_line_bytes)
        return
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror or exc}") from None
    with stream:
        yield from read_stream(stream, fmt=fmt, max_line_bytes=max_line_bytes)


def read_stream(
    stream: BinaryIO, *, fmt: Format, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[Item]:
    """Like `read_invoices`, from an open binary stream (which the caller closes)."""
    lines = _physical_lines(stream, max_line_bytes)
    if fmt == "csv":
        yield from _read_csv(lines)
    elif fmt == "jsonl":
        yield from _read_jsonl(lines)
    else:
        raise SourceError(f"unknown format {fmt!r}: use 'csv' or 'jsonl'")


def _format_of(path: Path) -> Format:
    if str(path) == "-":
        raise SourceError("reading standard input needs an explicit format (csv or jsonl)")
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise SourceError(
            f"cannot tell the format of {path.name!r} from its extension: "
            "use .csv, .jsonl or .ndjson, or give the format"
        )
    return found


# --- physical lines: bounded reads, decoding, per-line problems -------------------------------


class _Line(NamedTuple):
    # A tuple, not a frozen dataclass: one is built per physical line.
    number: int
    text: str
    """Decoded line, line ending kept; bad bytes replaced by U+FFFD."""
    problem: str | None = None
    """Why this line cannot be trusted (bad UTF-8, NUL byte, too long)."""


def _physical_lines(stream: BinaryIO, max_bytes: int) -> Iterator[_Line]:
    number = 0
    while chunk := _readline(stream, max_bytes + 1):
        number += 1
        if number == 1:
            chunk = _without_bom(chunk)
        if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
            _skip_to_line_end(stream, max_bytes)
            # The prefix is kept so a CSV row can still name its invoice (and
            # reject it whole); it is never accepted as data.
            prefix = chunk[:max_bytes].decode("utf-8", "replace").replace("\x00", "\ufffd")
            yield _Line(number, prefix + "\n", f"line is longer than the {max_bytes:,}-byte limit")
            continue
        yield _decode(number, chunk)


def _readline(stream: BinaryIO, size: int) -> bytes:
    try:
        return stream.readline(size)
    except OSError as exc:
        raise SourceError(f"cannot read the file: {exc}") from None


def _skip_to_line_end(stream: BinaryIO, chunk_bytes: int) -> None:
    # Bounded chunks: a 10 GB line costs at most `chunk_bytes` of memory.
    while (chunk := _readline(stream, chunk_bytes)) and not chunk.endswith(b"\n"):
        pass


def _without_bom(chunk: bytes) -> bytes:
    if chunk.startswith(_UTF16_BOMS):
        raise SourceError("the file is UTF-16 encoded: save it as UTF-8 (CSV UTF-8 in Excel)")
    return chunk.removeprefix(_UTF8_BOM)


def _decode(number: int, chunk: bytes) -> _Line:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"not valid UTF-8 (byte 0x{chunk[exc.start]:02x} at byte {exc.start + 1})"
        return _Line(number, chunk.decode("utf-8", "replace").replace("\x00", "\ufffd"), problem)
    if "\x00" in text:
        problem = f"contains a NUL byte at column {text.index(chr(0)) + 1}"
        return _Line(number, text.replace("\x00", "\ufffd"), problem)
    return _Line(number, text)


# --- text safety shared by both formats -------------------------------------------------------

# A cell a spreadsheet would run as a formula. Cells are stripped first because
# the model strips whitespace, so " =1+1" would reach a report as "=1+1".
_FORMULA_START = ("=", "+", "-", "@")
# Signed numbers and phone numbers ("-12.50", "+1 (555) 010-0123") start with
# + or - too; without letters or operators they cannot call anything.
_NUMBERISH = re.compile(r"[+-][\d\s().,/-]*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A row's cells, each preceded by _CELL_SEP: this finds every cell that could
# start with a formula character once stripped, so together with an ASCII
# check (no lone surrogate) a row it misses needs no per-cell check. A false
# alarm (a cell holding the separator, a signed number) only costs the exact
# per-cell check. `\s` is str.isspace, the whitespace str.strip removes. It
# starts with a literal so the regex engine can skip ahead (one pass, ~1 us).
_CELL_SEP = "\x1f"
_FORMULA_IN_ROW = re.compile("\x1f\\s*[=+@-]")


def _text_problem(value: str) -> str | None:
    """Why `value` must not be accepted as text, or None."""
    # isascii first: it is nearly free, and nearly every value is ASCII.
    if not value.isascii() and _SURROGATE.search(value):
        return "holds an invalid \\u escape (a lone surrogate)"
    text = value.strip()
    if text.startswith(_FORMULA_START) and not _NUMBERISH.fullmatch(text):
        return (
            f"{_show(text)} would run as a spreadsheet formula: values starting with "
            "=, +, - or @ are refused because reports are opened in Excel"
        )
    return None


def _show(value: object, limit: int = 40) -> str:
    """A short, printable, quoted rendering of user data for messages."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _label(number: str | None) -> str | None:
    """An invoice number safe to print, or a quoted rendering of it."""
    if number is None or not number:
        return None
    return number if number.isprintable() and len(number) <= 64 else _show(number)


def _json_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            path += f".{part}" if path else part
        else:
            path += f"[{_show(part)}]"
    return path


def _printable(text: str, limit: int = 500) -> str:
    """`text` made safe to log or print: no lone surrogates, bounded length."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "..."


def _pydantic_message(error: ErrorDetails) -> str:
    message = _printable(error["msg"].removeprefix("Value error, "))
    value = error.get("input")
    scalar = isinstance(value, str | int | Decimal) and not isinstance(value, bool)
    if scalar and error["type"] != "missing":
        message += f" (got {_show(value)})"
    return message


def _capped(errors: list[RecordError]) -> list[RecordError]:
    if len(errors) <= MAX_ERRORS_PER_RECORD:
        return errors
    kept = errors[:MAX_ERRORS_PER_RECORD]
    rest = len(errors) - len(kept)
    more = RecordError(
        kept[-1].line, f"... and {rest} more problems", None, kept[-1].invoice_number
    )
    return [*kept, more]


def _totals_problem(invoice: Invoice) -> str | None:
    try:
        invoice.totals()
    except ArithmeticError:
        return "amounts are too large to compute a total"
    return None


# --- CSV: columns -----------------------------------------------------------------------------

_INVOICE_PATHS: dict[str, tuple[str, ...]] = {
    "invoice_number": ("number",),
    "customer_id": ("customer", "id"),
    "customer_first_name": ("customer", "first_name"),
    "customer_last_name": ("customer", "last_name"),
    "customer_firm_name": ("customer", "firm_name"),
    "customer_email": ("customer", "email"),
    "customer_phone": ("customer", "phone"),
    "customer_address1": ("customer", "address", "line1"),
    "customer_address2": ("customer", "address", "line2"),
    "customer_city": ("customer", "address", "city"),
    "customer_state": ("customer", "address", "state"),
    "customer_zip": ("customer", "address", "zip"),
    "customer_zip4": ("customer", "address", "zip4"),
    "customer_country_code": ("customer", "address", "country_code"),
    "customer_country": ("customer", "address", "country"),
    "currency": ("currency",),
    "invoice_date": ("invoice_date",),
    "memo": ("notes", "memo"),
    "footer_note": ("notes", "footer"),
    "terms_note": ("notes", "terms"),
    "maast_profile_id": ("maast", "profile_id"),
    "stax_url": ("stax", "url"),
}
_BOOL_PATHS: dict[str, tuple[str, ...]] = {
    "allow_partial": ("payment", "partial"),
    "allow_ach": ("payment", "ach"),
    "allow_card": ("payment", "card"),
    "allow_tips": ("payment", "tips"),
    "email_receipt": ("payment", "email_receipt"),
    "send": ("send",),
}
_SPECIAL_COLUMNS = ("tax_rate", "tax_amount", "terms_days", "due_date", "funding")
_LINE_PATHS: dict[str, tuple[str, ...]] = {
    "item_name": ("name",),
    "description": ("description",),
    "quantity": ("quantity",),
    "unit_price": ("unit_price",),
}
_INVOICE_COLUMNS = (*_INVOICE_PATHS, *_BOOL_PATHS, *_SPECIAL_COLUMNS)
COLUMNS = (*_INVOICE_COLUMNS, *_LINE_PATHS)
"""Every CSV column, invoice-level first, then line-level."""
REQUIRED_COLUMNS = ("invoice_number", "customer_id", "description", "quantity", "unit_price")
_NUMBER_COLUMNS = ("quantity", "unit_price", "tax_rate", "tax_amount")
# Common names people use, for "did you mean" only; they are not accepted.
_ALIASES = {
    "qty": "quantity",
    "price": "unit_price",
    "amount": "unit_price",
    "customer": "customer_id",
    "number": "invoice_number",
    "invoice": "invoice_number",
    "email": "customer_email",
    "item": "item_name",
    "date": "invoice_date",
    "tax": "tax_rate",
}
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
# Plain decimals only: no thousands separators, exponents or NaN, so a money
# value means what it looks like.
_PLAIN_DECIMAL = re.compile(r"[+-]?\d{1,15}(\.\d{1,10})?")


def _normalize(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def _check_header(cells: list[str]) -> list[str]:
    """Normalized column names by position ('' for an unnamed column)."""
    names = [_normalize(cell) for cell in cells]
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name and name in seen:
            raise SourceError(
                f"column {_show(name)} appears twice (columns {seen[name]} and {position})"
            )
        seen[name] = position
    unknown = [name for name in names if name and name not in COLUMNS]
    if unknown:
        listed = ", ".join(_suggest(name) for name in unknown[:10])
        raise SourceError(f"unknown column(s): {listed}; see docs/input-formats.md")
    missing = [name for name in REQUIRED_COLUMNS if name not in seen]
    if missing:
        raise SourceError(f"missing required column(s): {', '.join(missing)}")
    return names


def _suggest(name: str) -> str:
    close = _ALIASES.get(name) or next(iter(difflib.get_close_matches(name, COLUMNS, n=1)), None)
    return f"{_show(name)} (did you mean {close!r}?)" if close else _show(name)


# --- CSV: rows --------------------------------------------------------------------------------


class _LineFeed:
    """Feeds decoded lines to `csv.reader`, remembering the problems of the lines it gave."""

    def __init__(self, lines: Iterator[_Line]) -> None:
        self._lines = lines
        self.number = 0
        self._problems: list[tuple[int, str]] = []

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.number = line.number
        if line.problem is not None:
            self._problems.append((line.number, line.problem))
        return line.text

    def take_problems(self, row_line: int) -> list[str]:
        """Problems of the lines read since the last call (the lines of the row at `row_line`)."""
        taken, self._problems = self._problems, []
        return [p if n == row_line else f"line {n}: {p}" for n, p in taken]


@dataclass
class _Row:
    line: int
    cells: list[str]
    problems: list[str]

    def blank(self) -> bool:
        # Some cell holds a non-space character exactly when the joined row does.
        return not self.problems and not "".join(self.cells).strip()


def _csv_rows(lines: Iterator[_Line]) -> Iterator[_Row]:
    feed = _LineFeed(lines)
    # strict: a stray quote is an error, not silently glued into a value.
    reader = csv.reader(feed, strict=True)
    while True:
        start = feed.number + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _Row(start, [], [*feed.take_problems(start), f"not valid CSV: {exc}"])
            continue
        yield _Row(start, cells, feed.take_problems(start))


def _read_header(rows: Iterator[_Row]) -> list[str]:
    for row in rows:
        if row.problems:
            raise SourceError(f"header row (line {row.line}): {'; '.join(row.problems)}")
        if not row.blank():
            return _check_header(row.cells)
    raise SourceError("the file is empty: a CSV needs a header row (see docs/input-formats.md)")


def _read_csv(lines: Iterator[_Line]) -> Iterator[Item]:
    rows = _csv_rows(lines)
    assembler = _Assembler(_Layout.of(_read_header(rows)))
    for row in rows:
        yield from assembler.add(row)
    yield from assembler.finish()


@dataclass(frozen=True)
class _Layout:
    """What a header implies for every row, worked out once per file rather than per row."""

    header: list[str]
    """Normalized column names by position ('' for an unnamed column)."""
    all_named: bool
    invoice_columns: tuple[str, ...]
    """The invoice-level columns the header has, in `_INVOICE_COLUMNS` order."""
    invoice_cells: Callable[[list[str]], tuple[str, ...]]
    """The raw invoice-level cells of a full-width row (as a tuple, to compare rows at once)."""
    invoice_parts: tuple[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], ...]
    """The `_INVOICE_PATHS` the header has, by parent: (parent keys, ((column, key), ...))."""
    bool_paths: tuple[tuple[str, tuple[str, ...]], ...]
    line_columns: tuple[tuple[str, str, bool], ...]
    """(column, line item key, is a number) of the `_LINE_PATHS` the header has."""

    @classmethod
    def of(cls, header: list[str]) -> _Layout:
        """The layout of a checked header."""
        present = set(header)
        positions = [header.index(column) for column in _INVOICE_COLUMNS if column in present]
        # Two positions at least (invoice_number and customer_id are required
        # columns), so the getter returns a tuple, never a bare cell.
        return cls(
            header=header,
            all_named=all(header),
            invoice_columns=tuple(c for c in _INVOICE_COLUMNS if c in present),
            invoice_cells=itemgetter(*positions),
            invoice_parts=_parts(column for column in _INVOICE_PATHS if column in present),
            bool_paths=tuple((c, path) for c, path in _BOOL_PATHS.items() if c in present),
            line_columns=tuple(
                (column, key, column in _NUMBER_COLUMNS)
                for column, (key,) in _LINE_PATHS.items()
                if column in present
            ),
        )


def _parts(
    columns: Iterable[str],
) -> tuple[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], ...]:
    """`_INVOICE_PATHS` of `columns` grouped by parent (("customer", "address"): ...)."""
    parts: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for column in columns:
        path = _INVOICE_PATHS[column]
        parts.setdefault(path[:-1], []).append((column, path[-1]))
    return tuple((parents, tuple(pairs)) for parents, pairs in parts.items())


@dataclass
class _Group:
    """The consecutive rows of one invoice, with problems found while grouping."""

    number: str
    rows: list[_Row]
    problems: list[RecordError] = field(default_factory=list)
    dropped_rows: int = 0

    def add(self, row: _Row) -> None:
        if len(self.rows) < MAX_LINES_PER_INVOICE:
            self.rows.append(row)
        else:
            self.dropped_rows += 1


class _Assembler:
    """Groups consecutive rows by invoice number and turns each group into one result."""

    def __init__(self, layout: _Layout) -> None:
        self._layout = layout
        self._position = {name: i for i, name in enumerate(layout.header) if name}
        self._pending: _Group | None = None
        self._ended: dict[str, int] = {}
        self._orphan_line: int | None = None

    def add(self, row: _Row) -> Iterator[Item]:
        """Results completed by `row` (the previous invoice ends when another begins)."""
        if row.blank():
            return
        number = self._number_of(row)
        pending = self._pending
        if number is None:
            yield from self._orphan(row)
        elif pending is not None and pending.number == number:
            pending.add(row)
        else:
            if pending is not None:
                yield from self._finish(pending)
            self._pending = self._start(number, row)

    def finish(self) -> Iterator[Item]:
        """The last invoice's result, at the end of the file."""
        if self._pending is not None:
            yield from self._finish(self._pending)
            self._pending = None

    def _number_of(self, row: _Row) -> str | None:
        at = self._position["invoice_number"]
        number = row.cells[at].strip() if at < len(row.cells) else ""
        return number if number and "\ufffd" not in number else None

    def _orphan(self, row: _Row) -> Iterator[Item]:
        # A row whose invoice number is missing or unreadable might belong to
        # the invoice before or after it: both are rejected, so no invoice is
        # ever accepted with a line item missing.
        messages = row.problems or ["the invoice number is missing: every row needs one"]
        for message in messages:
            yield RecordError(row.line, message, "invoice_number")
        if self._pending is not None:
            self._pending.problems.append(self._neighbour_error(row.line, self._pending.number))
        self._orphan_line = row.line

    def _neighbour_error(self, orphan_line: int, number: str) -> RecordError:
        message = (
            f"the row at line {orphan_line} has no readable invoice number and may belong here"
        )
        return RecordError(orphan_line, message, "invoice_number", _label(number))

    def _start(self, number: str, row: _Row) -> _Group:
        group = _Group(number, [row])
        if number in self._ended:
            message = (
                f"invoice {_label(number)} already ended at line {self._ended[number]}; "
                "its rows must be consecutive"
            )
            group.problems.append(RecordError(row.line, message, "invoice_number", _label(number)))
        if self._orphan_line is not None:
            group.problems.append(self._neighbour_error(self._orphan_line, number))
            self._orphan_line = None
        return group

    def _finish(self, group: _Group) -> Iterator[Item]:
        self._ended[group.number] = group.rows[-1].line
        result = _GroupReader(self._layout, group).read()
        if isinstance(result, Record):
            yield result
        else:
            yield from _capped(result)


class _GroupReader:
    """Turns one invoice's rows into an `Invoice` or all its problems."""

    def __init__(self, layout: _Layout, group: _Group) -> None:
        self._layout = layout
        self._header = layout.header
        self._group = group
        self._label = _label(group.number)
        self._rows = group.rows
        self._values = [self._row_values(row) for row in group.rows]
        self._errors: list[RecordError] = list(group.problems)
        self._columns_used: dict[str, str] = {}
        """Which column fed a model part whose column is ambiguous ("tax", "terms")."""

    def read(self) -> Record | list[RecordError]:
        if self._group.dropped_rows:
            message = f"more than {MAX_LINES_PER_INVOICE} rows: split the invoice"
            self._error(self._rows[-1].line, None, message)
        for row in self._rows:
            self._check_row(row)
        self._check_agreement()
        invoice = self._validate(self._invoice_data())
        if invoice is not None and (problem := _totals_problem(invoice)):
            self._error(self._rows[0].line, None, problem)
        if self._errors or invoice is None:
            return self._errors
        return Record(self._rows[0].line, invoice)

    def _error(self, line: int, column: str | None, message: str) -> None:
        # One report per (line, column): a formula cell is not also reported
        # as "not a decimal" by the model.
        if column is not None and any(e.line == line and e.field == column for e in self._errors):
            return
        self._errors.append(RecordError(line, message, column, self._label))

    def _row_values(self, row: _Row) -> dict[str, str]:
        if self._layout.all_named:  # the usual header: one C-level pass
            return dict(zip(self._header, map(str.strip, row.cells), strict=False))
        return {
            name: cell.strip() for name, cell in zip(self._header, row.cells, strict=False) if name
        }

    def _check_row(self, row: _Row) -> None:
        if not row.problems and self._plain(row.cells):
            return  # the usual row: nothing below could find anything
        for line_problem in row.problems:
            self._error(row.line, None, line_problem)
        if row.problems:
            return  # its cells cannot be trusted: no further findings about them
        extra = [cell for cell in row.cells[len(self._header) :] if cell.strip()]
        if row.cells and (len(row.cells) < len(self._header) or extra):
            count = f"{len(row.cells)} cells but the header has {len(self._header)}"
            self._error(row.line, None, f"row has {count}")
        for name, cell in zip(self._header, row.cells, strict=False):
            if not name and cell.strip():
                self._error(row.line, None, f"value {_show(cell)} under a column with no name")
            elif name and cell and (problem := _text_problem(cell)):
                self._error(row.line, name, problem)

    def _plain(self, cells: list[str]) -> bool:
        """True when `_check_row` surely finds nothing in these cells (one pass over the row)."""
        if len(cells) != len(self._header) or not self._layout.all_named:
            return False
        joined = _CELL_SEP + _CELL_SEP.join(cells)
        return joined.isascii() and not _FORMULA_IN_ROW.search(joined)

    def _check_agreement(self) -> None:
        # Continuation rows may leave invoice-level cells empty; a value given
        # must equal the first row's, or we would not know which one is meant.
        first_row, first = self._rows[0], self._values[0]
        width, same_as_first = len(self._header), self._layout.invoice_cells
        full = len(first_row.cells) >= width
        for row, values in zip(self._rows[1:], self._values[1:], strict=True):
            if (
                full
                and len(row.cells) >= width
                and same_as_first(row.cells) == same_as_first(first_row.cells)
            ):
                continue  # the usual continuation row repeats the invoice columns exactly
            for column in self._layout.invoice_columns:
                value, expected = values.get(column, ""), first.get(column, "")
                if value and value != expected:
                    message = (
                        f"{_show(value)} here but {_show(expected)} at line {first_row.line}: "
                        "rows of one invoice must agree on invoice columns"
                    )
                    self._error(row.line, column, message)

    def _invoice_data(self) -> dict[str, object]:
        first, line = self._values[0], self._rows[0].line
        data: dict[str, object] = {"customer": {}}
        # One comprehension per part (the customer, its address, notes...)
        # rather than one `_put` per cell: this runs for every invoice.
        for parents, pairs in self._layout.invoice_parts:
            part = {key: value for column, key in pairs if (value := first.get(column))}
            if part:
                node = data
                for parent in parents:
                    node = cast(dict[str, object], node.setdefault(parent, {}))
                node.update(part)
        for column, path in self._layout.bool_paths:
            if value := first.get(column):
                self._put_bool(data, path, column, value, line)
        self._put_tax(data, first, line)
        self._put_terms(data, first, line)
        if value := first.get("funding"):
            self._put_funding(data, value, line)
        data["lines"] = [
            self._line_data(row, values)
            for row, values in zip(self._rows, self._values, strict=True)
        ]
        return data

    def _line_data(self, row: _Row, values: dict[str, str]) -> dict[str, object]:
        item: dict[str, object] = {}
        for column, key, number in self._layout.line_columns:
            value = values.get(column)
            if value and (not number or self._number_ok(row.line, column, value)):
                item[key] = value
        return item

    def _number_ok(self, line: int, column: str, value: str) -> bool:
        if column not in _NUMBER_COLUMNS or _PLAIN_DECIMAL.fullmatch(value):
            return True
        self._error(line, column, f"{_show(value)} is not a plain decimal number (like 1234.50)")
        return False

    def _put_bool(
        self, data: dict[str, object], path: tuple[str, ...], column: str, value: str, line: int
    ) -> None:
        flag = _BOOLEANS.get(value.lower())
        if flag is None:
            self._error(line, column, f"{_show(value)} is not true/false, yes/no or 1/0")
        else:
            _put(data, path, flag)

    def _put_tax(self, data: dict[str, object], first: Mapping[str, str], line: int) -> None:
        rate, amount = first.get("tax_rate"), first.get("tax_amount")
        if rate and amount:
            self._error(line, "tax_amount", "give tax_rate or tax_amount, not both")
        elif rate and self._number_ok(line, "tax_rate", rate):
            data["tax"] = {"kind": "rate", "value": rate}
            self._columns_used["tax"] = "tax_rate"
        elif amount and self._number_ok(line, "tax_amount", amount):
            data["tax"] = {"kind": "amount", "value": amount}
            self._columns_used["tax"] = "tax_amount"

    def _put_terms(self, data: dict[str, object], first: Mapping[str, str], line: int) -> None:
        days, due = first.get("terms_days"), first.get("due_date")
        if days and due:
            self._error(line, "due_date", "give terms_days or due_date, not both")
        elif days:
            data["terms"] = {"kind": "days", "days": days}
            self._columns_used["terms"] = "terms_days"
        elif due:
            data["terms"] = {"kind": "date", "due_date": due}
            self._columns_used["terms"] = "due_date"

    def _put_funding(self, data: dict[str, object], value: str, line: int) -> None:
        legs: list[dict[str, str]] = []
        for part in value.split(";"):
            account, colon, amount = part.strip().rpartition(":")
            if not colon or not account.strip() or not _PLAIN_DECIMAL.fullmatch(amount.strip()):
                message = (
                    f"{_show(part.strip())} is not account:amount (like acct1:60.00;acct2:40.00)"
                )
                self._error(line, "funding", message)
                return
            legs.append({"account_id": account.strip(), "amount": amount.strip()})
        data["funding"] = legs

    def _validate(self, data: dict[str, object]) -> Invoice | None:
        try:
            return Invoice.model_validate(data)
        except ValidationError as exc:
            broken = {e.line for e in self._errors if e.field is None}
            for error in exc.errors():
                line, column = self._locate(error["loc"])
                if line in broken:
                    continue  # the row itself is unreadable; its cells' errors would mislead
                missing = error["type"] == "missing"
                self._error(
                    line, column, "required, but empty" if missing else _pydantic_message(error)
                )
            return None

    def _locate(self, loc: tuple[int | str, ...]) -> tuple[int, str]:
        """The row and column a model error location points at."""
        first = self._rows[0].line
        if len(loc) >= 2 and loc[0] == "lines" and isinstance(loc[1], int):
            line = self._rows[loc[1]].line if loc[1] < len(self._rows) else first
            return line, _column_at(loc[2:], _LINE_PATHS) or "description"
        head = str(loc[0]) if loc else ""
        if head in self._columns_used:
            return first, self._columns_used[head]
        if head == "funding":
            return first, "funding"
        return first, _column_at(loc, _INVOICE_PATHS | _BOOL_PATHS) or _json_path(loc)


def _column_at(loc: Sequence[int | str], table: Mapping[str, tuple[str, ...]]) -> str | None:
    matches = [(len(path), name) for name, path in table.items() if tuple(loc[: len(path)]) == path]
    return max(matches)[1] if matches else None


def _put(data: dict[str, object], path: tuple[str, ...], value: object) -> None:
    node = data
    for key in path[:-1]:
        node = cast(dict[str, object], node.setdefault(key, {}))
    node[path[-1]] = value


# --- JSONL ------------------------------------------------------------------------------------


def _read_jsonl(lines: Iterator[_Line]) -> Iterator[Item]:
    seen: dict[str, int] = {}
    for line in lines:
        if line.problem is not None:
            yield RecordError(line.number, line.problem)
        elif text := line.text.strip():
            yield from _jsonl_record(line.number, text, seen)


def _jsonl_record(number: int, text: str, seen: dict[str, int]) -> Iterator[Item]:
    try:
        body = json.loads(
            text, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_unique_keys
        )
    except RecursionError:
        yield RecordError(number, "not valid JSON: nested too deeply")
        return
    except ValueError as exc:
        yield RecordError(number, f"not valid JSON: {_json_problem(exc)}")
        return
    if not isinstance(body, dict):
        yield RecordError(
            number, f"expected a JSON object (one invoice per line), got {_kind(body)}"
        )
        return
    yield from _jsonl_invoice(number, cast(dict[str, object], body), seen)


def _jsonl_invoice(number: int, body: dict[str, object], seen: dict[str, int]) -> Iterator[Item]:
    tagged = "provider" in body
    provider = _provider_of(body.pop("provider", None))
    label = _label(_raw_number(body, provider))
    errors = [RecordError(number, m, path or None, label) for path, m in _unsafe_strings(body)]
    if tagged and provider is None:
        message = (
            "is not a provider: use 'maast' or 'stax' (or no provider key for a neutral invoice)"
        )
        errors.append(RecordError(number, message, "provider", label))
    invoice = None
    if not tagged or provider is not None:
        invoice, problems = _invoice_of(body, provider)
        reported = {error.field for error in errors}
        errors += [RecordError(number, m, p, label) for p, m in problems if p not in reported]
    key = invoice.number if invoice is not None else _raw_number(body, provider)
    if key is not None and key in seen:
        message = f"invoice {label} already appeared at line {seen[key]}"
        errors.append(RecordError(number, message, None, label))
    elif key is not None:
        seen[key] = number
    if invoice is not None and (problem := _totals_problem(invoice)):
        errors.append(RecordError(number, problem, None, label))
    if errors or invoice is None:
        yield from _capped(errors)
    else:
        yield Record(number, invoice, provider)


_Problems = list[tuple[str | None, str]]


def _invoice_of(
    body: dict[str, object], provider: Provider | None
) -> tuple[Invoice | None, _Problems]:
    try:
        return _build_invoice(body, provider), []
    except ValidationError as exc:
        return None, [(_json_path(e["loc"]) or None, _pydantic_message(e)) for e in exc.errors()]
    except InvoiceError as exc:
        found: _Problems = [(error.field, _printable(error.message)) for error in exc.field_errors]
        return None, found or [(None, _printable(exc.message))]
    except _ProviderUnavailable as exc:
        return None, [("provider", str(exc))]
    except _BodyRejected as exc:
        return None, [(None, str(exc))]


def _build_invoice(body: dict[str, object], provider: Provider | None) -> Invoice:
    if provider is None:
        return Invoice.model_validate(body)
    reader = _provider_reader(provider)
    try:
        return reader(body)
    except (ValidationError, InvoiceError):
        raise
    except Exception as exc:  # a provider mapper must never crash a whole file
        raise _BodyRejected(_printable(f"not a valid {provider} create body: {exc}")) from exc


class _BodyRejected(Exception):
    """A provider's mapper refused a body in a way of its own."""


class _ProviderUnavailable(Exception):
    """This install cannot map that provider's bodies."""


def _provider_reader(provider: Provider) -> Callable[[Mapping[str, object]], Invoice]:
    # Imported on use: providers depend on httpx, readers of neutral files should not.
    module_name = f"jobs.providers.{provider.value}"
    try:
        module = importlib.import_module(module_name)
        return cast(Callable[[Mapping[str, object]], Invoice], module.invoice_from_request)
    except (ImportError, AttributeError):
        message = f"reading {provider} bodies needs {module_name}.invoice_from_request"
        raise _ProviderUnavailable(message) from None


def _provider_of(value: object) -> Provider | None:
    if isinstance(value, str) and value in {p.value for p in Provider}:
        return Provider(value)
    return None


def _raw_number(body: Mapping[str, object], provider: Provider | None) -> str | None:
    """The invoice number a body claims, before validation (for messages and duplicates)."""
    if provider is Provider.MAAST:
        value = body.get("invoice_number")
    elif provider is Provider.STAX:
        meta = body.get("meta")
        value = meta.get("reference") if isinstance(meta, dict) else None
    else:
        value = body.get("number")
    return value.strip() if isinstance(value, str) and value.strip() else None


def _unsafe_strings(body: object) -> Iterator[tuple[str, str]]:
    """(JSON path, problem) for every formula-like or broken string, keys included."""
    # Iterative: json accepts nesting deeper than a recursive walk could go.
    stack: list[tuple[list[int | str], object]] = [([], body)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                if _SURROGATE.search(key):
                    yield _json_path(loc), "a key holds an invalid \\u escape (a lone surrogate)"
                else:
                    stack.append(([*loc, key], item))
        elif isinstance(value, list):
            stack.extend(([*loc, i], item) for i, item in reversed(list(enumerate(value))))
        elif isinstance(value, str) and (problem := _text_problem(value)):
            yield _json_path(loc), problem


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    body: dict[str, object] = {}
    for key, value in pairs:
        if key in body:
            raise ValueError(f"key {_show(key)} appears twice in one object")
        body[key] = value
    return body


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")


def _json_problem(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)


def _kind(value: object) -> str:
    names: Iterable[tuple[type, str]] = ((list, "an array"), (str, "a string"), (bool, "a boolean"))
    for kind, name in names:
        if isinstance(value, kind):
            return name
    return "null" if value is None else "a number"
