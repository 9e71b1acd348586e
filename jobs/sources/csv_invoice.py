"""One CSV invoice: turning a group of rows into an `Invoice` or all its problems.

Checks each row's cells, that continuation rows agree on invoice columns,
builds the model's input from the header layout, validates it, and points
each model error back at its row and column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import cast

from pydantic import ValidationError

from jobs.models import Invoice
from jobs.sources.csv_columns import (
    _BOOL_PATHS,
    _BOOLEANS,
    _DECIMAL_SHAPE,
    _INVOICE_PATHS,
    _LINE_PATHS,
    _NUMBER_COLUMNS,
    _PLAIN_DECIMAL,
    _Layout,
)
from jobs.sources.csv_rows import _Group, _Row
from jobs.sources.lines import _CELL_SEP, _FORMULA_IN_ROW, _text_problem
from jobs.sources.messages import _json_path, _label, _pydantic_message, _show, _totals_problem
from jobs.sources.records import Record, RecordError, Source


class _GroupReader:
    """Turns one invoice's rows into an `Invoice` or all its problems."""

    def __init__(self, layout: _Layout, group: _Group, header_text: str) -> None:
        self._layout = layout
        self._header_text = header_text
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
            message = f"more than {self._group.max_rows} rows: split the invoice"
            self._error(self._rows[-1].line, None, message)
        for row in self._rows:
            self._check_row(row)
        self._check_agreement()
        invoice = self._validate(self._invoice_data())
        if invoice is not None and (problem := _totals_problem(invoice)):
            self._error(self._rows[0].line, None, problem)
        source = Source(
            "csv", tuple([(row.line, row.text) for row in self._rows]), self._header_text
        )
        if self._errors or invoice is None:
            return [dataclasses.replace(e, source=source) for e in self._errors]
        return Record(self._rows[0].line, invoice, source=source)

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
        if _DECIMAL_SHAPE.fullmatch(value):
            message = "has too many digits: at most 15 before the decimal point and 10 after"
        else:
            message = "is not a plain decimal number (like 1234.50)"
        self._error(line, column, f"{_show(value)} {message}")
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
