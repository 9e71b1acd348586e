"""CSV rows: parsing lines into rows, reading the header, grouping rows by invoice.

Consecutive rows with one invoice number make one invoice; a row whose number
is missing or unreadable rejects its neighbours too. Each group is turned into
a result by `csv_invoice._GroupReader`.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter

# The package, not records: `MAX_LINES_PER_INVOICE` is read from `jobs.sources`
# at call time, as before the split, so patching it there still takes effect.
from jobs import sources as _package
from jobs.sources.csv_columns import (
    _BOOL_PATHS,
    _INVOICE_COLUMNS,
    _INVOICE_PATHS,
    _LINE_PATHS,
    _NUMBER_COLUMNS,
    _check_header,
)
from jobs.sources.csv_invoice import _GroupReader
from jobs.sources.lines import _Line
from jobs.sources.messages import _capped, _label
from jobs.sources.records import Item, Record, RecordError, SourceError


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
        if len(self.rows) < _package.MAX_LINES_PER_INVOICE:
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
