"""The CSV reader's one-pass row check never skips a cell the per-cell check would refuse."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jobs.sources import _CELL_SEP, _FORMULA_IN_ROW, _text_problem

# A cell: optional whitespace (ASCII and not, the separator itself included),
# then a first character that may start a formula, then anything.
_CELL = st.builds(
    lambda space, head, tail: space + head + tail,
    st.text(st.sampled_from(" \t\x1f\x1c\x0b\u3000\u2028\x85"), max_size=2),
    st.sampled_from(["=", "+", "-", "@", "a", "1", "é", ""]),
    st.text(max_size=4),
)
_CELLS = st.lists(_CELL | st.text(max_size=6), max_size=8)


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
