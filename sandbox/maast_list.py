"""Maast's invoice browse query: count, page, order_on, order_by, filter.

`filter=field,OP,value` (repeatable; all must hold) with OP one of EQ, NE,
GT, GE, LT, LE, LIKE (substring). An `invoice_number,EQ,...` filter uses the
number index, so lookups stay fast with many invoices. Pure: no replies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from sandbox.maast_rules import Problem
from sandbox.state import Record, Store

_OPS: dict[str, Callable[[object, str], bool]] = {}


def _op(name: str) -> Callable[[Callable[[object, str], bool]], Callable[[object, str], bool]]:
    def register(fn: Callable[[object, str], bool]) -> Callable[[object, str], bool]:
        _OPS[name] = fn
        return fn

    return register


@_op("EQ")
def _eq(value: object, wanted: str) -> bool:
    return _text(value) == wanted


@_op("NE")
def _ne(value: object, wanted: str) -> bool:
    return _text(value) != wanted


@_op("LIKE")
def _like(value: object, wanted: str) -> bool:
    return wanted.lower() in _text(value).lower()


@_op("GT")
def _gt(value: object, wanted: str) -> bool:
    return _sort_key(value) > _sort_key(wanted)


@_op("GE")
def _ge(value: object, wanted: str) -> bool:
    return _sort_key(value) >= _sort_key(wanted)


@_op("LT")
def _lt(value: object, wanted: str) -> bool:
    return _sort_key(value) < _sort_key(wanted)


@_op("LE")
def _le(value: object, wanted: str) -> bool:
    return _sort_key(value) <= _sort_key(wanted)


@dataclass
class Query:
    """A parsed browse request."""

    count: int = 10
    page: int = 0
    order_on: str = "invoice_number"
    descending: bool = True
    filters: list[tuple[str, str, str]] = field(default_factory=list)


def parse_query(params: list[tuple[str, str]]) -> Query | list[Problem]:
    """The query, or the problems with it."""
    query, problems = Query(), list[Problem]()
    for name, value in params:
        if name == "count":
            query.count = _int(value, 1, 100, name, problems, query.count)
        elif name == "page":
            query.page = _int(value, 0, 10**9, name, problems, query.page)
        elif name == "order_on":
            query.order_on = value
        elif name == "order_by":
            if value.lower() not in ("asc", "desc"):
                problems.append(Problem("order_by", "order_by must be asc or desc"))
            query.descending = value.lower() != "asc"
        elif name in ("filter", "filter[]"):
            _parse_filter(value, query, problems)
    return problems or query


def _int(value: str, low: int, high: int, name: str, problems: list[Problem], old: int) -> int:
    if value.isdigit() and low <= int(value) <= high:
        return int(value)
    problems.append(Problem(name, f"{name} must be a whole number from {low} to {high}"))
    return old


def _parse_filter(value: str, query: Query, problems: list[Problem]) -> None:
    parts = value.split(",", 2)
    if len(parts) != 3 or parts[1].upper() not in _OPS or not parts[0]:
        ops = "/".join(_OPS)
        problems.append(Problem("filter", f"filter must be field,OP,value with OP in {ops}"))
        return
    query.filters.append((parts[0], parts[1].upper(), parts[2]))


def run_query(store: Store, query: Query) -> tuple[list[Record], int]:
    """The page of records the query selects, and how many match in all."""
    matching = [r for r in _candidates(store, query) if _keep(r, query.filters)]
    matching.sort(key=lambda r: (_sort_key(r.doc.get(query.order_on)), r.seq))
    if query.descending:
        matching.reverse()
    start = query.page * query.count
    return matching[start : start + query.count], len(matching)


def _candidates(store: Store, query: Query) -> list[Record]:
    for name, op, value in query.filters:
        if name == "invoice_number" and op == "EQ":
            return [store.invoices[i] for i in store.by_key.get(value, [])]
    return list(store.invoices.values())


def _keep(record: Record, filters: list[tuple[str, str, str]]) -> bool:
    return all(_OPS[op](record.doc.get(name), value) for name, op, value in filters)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _sort_key(value: object) -> tuple[int, Decimal, str]:
    # Numbers sort numerically, before text; missing values sort first.
    if value is None:
        return (0, Decimal(0), "")
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return (1, Decimal(value), "")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        number = Decimal("NaN")
    if number.is_finite():
        return (1, number, "")
    return (2, Decimal(0), str(value))


def page_count(total: int, per_page: int) -> int:
    """How many pages `total` records fill."""
    return math.ceil(total / per_page)
