"""Reading a CSV file: its header, then its rows grouped by invoice.

Consecutive rows with one invoice number make one invoice; a row whose number
is missing or unreadable rejects its neighbours too. Rows come from
`csv_rows`, the header's layout from `csv_columns`, and each group is turned
into a result by `csv_invoice._GroupReader`.
"""

from __future__ import annotations

from collections.abc import Iterator

from jobs.sources.csv_columns import _check_header, _Layout
from jobs.sources.csv_invoice import _GroupReader
from jobs.sources.csv_rows import _csv_rows, _Group, _Row
from jobs.sources.lines import _Line
from jobs.sources.messages import _capped, _label
from jobs.sources.records import Item, Record, RecordError, Source, SourceError


def _read_header(rows: Iterator[_Row]) -> tuple[list[str], str]:
    """The checked column names, and the header line as written."""
    for row in rows:
        if row.problems:
            raise SourceError(f"header row (line {row.line}): {'; '.join(row.problems)}")
        if not row.blank():
            return _check_header(row.cells), row.text
    raise SourceError("the file is empty: a CSV needs a header row (see docs/input-formats.md)")


def _read_csv(lines: Iterator[_Line], max_rows: int) -> Iterator[Item]:
    """The results of a CSV file; an invoice keeps at most `max_rows` rows."""
    rows = _csv_rows(lines)
    header, header_text = _read_header(rows)
    assembler = _Assembler(_Layout.of(header), max_rows, header_text)
    for row in rows:
        yield from assembler.add(row)
    yield from assembler.finish()


class _Assembler:
    """Groups consecutive rows by invoice number and turns each group into one result."""

    def __init__(self, layout: _Layout, max_rows: int, header_text: str) -> None:
        self._layout = layout
        self._max_rows = max_rows
        self._header_text = header_text
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
        source = Source("csv", ((row.line, row.text),), self._header_text)
        for message in messages:
            yield RecordError(row.line, message, "invoice_number", source=source)
        if self._pending is not None:
            self._pending.problems.append(self._neighbour_error(row.line, self._pending.number))
        self._orphan_line = row.line

    def _neighbour_error(self, orphan_line: int, number: str) -> RecordError:
        message = (
            f"the row at line {orphan_line} has no readable invoice number and may belong here"
        )
        return RecordError(orphan_line, message, "invoice_number", _label(number))

    def _start(self, number: str, row: _Row) -> _Group:
        group = _Group(number, [row], self._max_rows)
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
        result = _GroupReader(self._layout, group, self._header_text).read()
        if isinstance(result, Record):
            yield result
        else:
            yield from _capped(result)
