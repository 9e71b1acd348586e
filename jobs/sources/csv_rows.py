"""CSV rows: decoded lines parsed into rows, and the consecutive rows of one invoice.

`_csv_rows` turns physical lines into `_Row`s, carrying each line's problems
(bad UTF-8, NUL, too long) to the row they belong to; the reader groups rows
into `_Group`s and `csv_invoice` turns each group into a result.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field

from jobs.sources.lines import _Line
from jobs.sources.records import RecordError


class _LineFeed:
    """Feeds decoded lines to `csv.reader`, keeping the text and problems of the lines it gave."""

    def __init__(self, lines: Iterator[_Line]) -> None:
        self._lines = lines
        self.number = 0
        self._problems: list[tuple[int, str]] = []
        self._texts: list[str] = []

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.number = line.number
        if line.problem is not None:
            self._problems.append((line.number, line.problem))
        self._texts.append(line.text)
        return line.text

    def take_text(self) -> str:
        """The text of the lines read since the last call (one row), without its line ending."""
        texts, self._texts = self._texts, []
        text = texts[0] if len(texts) == 1 else "".join(texts)
        return text.rstrip("\r\n")

    def take_problems(self, row_line: int) -> list[str]:
        """Problems of the lines read since the last call (the lines of the row at `row_line`)."""
        taken, self._problems = self._problems, []
        return [p if n == row_line else f"line {n}: {p}" for n, p in taken]


@dataclass
class _Row:
    line: int
    cells: list[str]
    problems: list[str]
    text: str = ""
    """The row as written (`Source.rows`)."""

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
            problems = [*feed.take_problems(start), f"not valid CSV: {exc}"]
            yield _Row(start, [], problems, feed.take_text())
            continue
        yield _Row(start, cells, feed.take_problems(start), feed.take_text())


@dataclass
class _Group:
    """The consecutive rows of one invoice, with problems found while grouping."""

    number: str
    rows: list[_Row]
    max_rows: int
    """Rows kept at most (`MAX_LINES_PER_INVOICE` unless the reader was given another)."""
    problems: list[RecordError] = field(default_factory=list)
    dropped_rows: int = 0

    def add(self, row: _Row) -> None:
        if len(self.rows) < self.max_rows:
            self.rows.append(row)
        else:
            self.dropped_rows += 1
