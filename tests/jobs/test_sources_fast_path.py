"""The CSV reader's one-pass row check never skips a cell the per-cell check would refuse."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jobs.sources import _CELL_SEP, _FORMULA_IN_ROW, _text_problem

_TRICKY = st.sampled_from(
    ["=", "+", "-", "@", " ", "\t", "\x1f", "\x1c", "\u3000", "\u2028", "\x85", "a", "1", "é"]
)
_CELLS = st.lists(st.text(_TRICKY, max_size=6) | st.text(max_size=6), max_size=8)


def _passes_fast_check(cells: list[str]) -> bool:
    # The body of `_GroupReader._plain` once the row's shape is known to be fine.
    joined = _CELL_SEP + _CELL_SEP.join(cells)
    return joined.isascii() and not _FORMULA_IN_ROW.search(joined)


@given(_CELLS)
def test_a_row_the_fast_check_passes_has_no_cell_problem(cells: list[str]) -> None:
    if _passes_fast_check(cells):
        assert [c for c in cells if _text_problem(c)] == []


@given(st.lists(st.sampled_from(["INV-1", "C1", "Ada", "2025-01-31", "10.50", ""]), max_size=8))
def test_ordinary_rows_take_the_fast_path(cells: list[str]) -> None:
    assert _passes_fast_check(cells)


def test_formula_cells_are_caught_wherever_they_are() -> None:
    for cell in ("=1+1", "  @x", "\t+cmd", "-x"):
        assert not _passes_fast_check(["INV-1", "C1", cell])
        assert not _passes_fast_check([cell, "C1"])
