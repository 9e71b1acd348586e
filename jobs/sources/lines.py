"""Physical lines and text safety shared by both formats.

Reads one physical line at a time with a bounded `readline` (a line longer
than the limit is skipped in bounded chunks), drops a UTF-8 BOM, refuses
UTF-16, decodes to text and notes why a line cannot be trusted (bad UTF-8,
NUL byte, too long). Also the checks every text value passes: no lone
surrogates, nothing a spreadsheet would run as a formula.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from jobs.sources.messages import _show
from jobs.sources.records import SourceError

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


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
