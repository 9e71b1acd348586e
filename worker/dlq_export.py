"""Dead letters written out: as a CSV list for people, or as the rows they came from.

`write_list` is `invoicer dlq export`: one CSV row per entry (why, how often,
when), every cell a spreadsheet could run as a formula defused. `write_source`
is `invoicer dlq export --source`: the records refused at enqueue given back
in the format they were written in (a CSV with its header, or JSONL lines),
in line order, ready to fix and enqueue again; a CSV cell the reader refuses
as a formula gets a leading `'`, so opening the file in Excel runs nothing
(and the reader points at that cell again until it is fixed). It reads
nothing itself: entries come from `worker.dlq.DeadLetters`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any, TextIO

from jobs.sources import Source, _text_problem
from worker.dead_letter import CSV_COLUMNS, DeadLetter


class MixedSources(ValueError):
    """The entries come from files of different formats or headers: one file cannot hold them."""


@dataclass
class SourceExport:
    """What `write_source` wrote."""

    records: int = 0
    rows: int = 0
    without_source: int = 0
    """Entries skipped: they hold no rows (rejected by the provider, in doubt, ...)."""
    format: str | None = None
    """`csv` or `jsonl`: what was written (None: nothing was)."""


async def write_list(entries: AsyncIterable[DeadLetter], out: TextIO) -> int:
    """One CSV row per entry (`CSV_COLUMNS`); the number of entries."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    async for entry in entries:
        writer.writerow(entry.csv_row())
        count += 1
    return count


async def write_source(entries: AsyncIterable[DeadLetter], out: TextIO) -> SourceExport:
    """The rows the entries' records were read from, in their format, in line order.

    Raises:
        MixedSources: the entries' rows come from CSV files with different
            headers, or from CSV and JSONL (nothing is written).
    """
    done = SourceExport()
    sources: list[Source] = []
    async for entry in entries:
        if entry.source is None:
            done.without_source += 1
        else:
            sources.append(entry.source)
    if not sources:
        return done
    kinds = {(s.format, s.header) for s in sources}
    if len(kinds) > 1:
        raise MixedSources(
            f"these dead letters come from {len(kinds)} different files (formats or CSV "
            "headers): export one batch at a time (--batch)"
        )
    rows = sorted((row for s in sources for row in s.rows), key=lambda row: row[0])
    fmt, header = sources[0].format, sources[0].header
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        for row in [header] if header is not None else []:
            _write_row(writer, out, row)
        for _, row in rows:
            _write_row(writer, out, row)
    else:
        out.writelines(row + "\n" for _, row in rows)
    done.records, done.rows, done.format = len(sources), len(rows), fmt
    return done


def _write_row(writer: Any, out: TextIO, row: str) -> None:
    """A CSV row as written, its formula cells defused; a row that is not valid
    CSV (one reason it was refused) goes out as it came, to be fixed by hand."""
    try:
        cells = next(csv.reader(io.StringIO(row), strict=True), [])
    except csv.Error:
        out.write(row + "\n")
        return
    writer.writerow(["'" + cell if _text_problem(cell) else cell for cell in cells])
