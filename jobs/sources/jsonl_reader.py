"""JSONL: one invoice per line, as a neutral `Invoice` body or a provider create body."""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import cast

from pydantic import ValidationError

from jobs.errors import InvoiceError
from jobs.models import Invoice, Provider
from jobs.sources.lines import _SURROGATE, _Line, _text_problem
from jobs.sources.messages import (
    _capped,
    _json_path,
    _label,
    _printable,
    _pydantic_message,
    _show,
    _totals_problem,
)
from jobs.sources.records import Item, Record, RecordError, Source


def _read_jsonl(lines: Iterator[_Line]) -> Iterator[Item]:
    seen: dict[str, int] = {}
    for line in lines:
        if line.problem is not None:
            source = Source("jsonl", ((line.number, line.text.rstrip("\r\n")),))
            yield RecordError(line.number, line.problem, source=source)
        elif text := line.text.strip():
            yield from _jsonl_record(
                line.number, text, seen, Source("jsonl", ((line.number, text),))
            )


def parse_json(text: str | bytes) -> object:
    """JSON as this reader reads it: numbers as exact decimals, no NaN, no key twice.

    Raises:
        ValueError: not valid JSON; the message says what and where.
    """
    try:
        return json.loads(
            text, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_unique_keys
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:
        raise ValueError(_json_problem(exc)) from None


def read_objects(bodies: Iterable[object]) -> Iterator[Item]:
    """Records of already-parsed JSON values (`parse_json`), one invoice each.

    The same rules and messages as a JSONL file whose lines hold these values:
    the n-th value (from 1) is "line" n, and numbers repeated among them are
    reported. For the HTTP API, which takes a list of invoices in one body.
    """
    seen: dict[str, int] = {}
    for number, body in enumerate(bodies, start=1):
        yield from _jsonl_value(number, body, seen)


def _jsonl_record(number: int, text: str, seen: dict[str, int], source: Source) -> Iterator[Item]:
    try:
        body = parse_json(text)
    except ValueError as exc:
        yield RecordError(number, f"not valid JSON: {exc}", source=source)
        return
    yield from _jsonl_value(number, body, seen, source)


def _jsonl_value(
    number: int, body: object, seen: dict[str, int], source: Source | None = None
) -> Iterator[Item]:
    if not isinstance(body, dict):
        message = f"expected a JSON object (one invoice per line), got {_kind(body)}"
        yield RecordError(number, message, source=source)
        return
    yield from _jsonl_invoice(number, cast(dict[str, object], body), seen, source)


def _jsonl_invoice(
    number: int, body: dict[str, object], seen: dict[str, int], source: Source | None
) -> Iterator[Item]:
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
        yield from _capped([dataclasses.replace(e, source=source) for e in errors])
    else:
        yield Record(number, invoice, provider, source)


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
        where = f"line {exc.lineno} column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        return f"{exc.msg} at {where}"
    return str(exc)


def _kind(value: object) -> str:
    names: Iterable[tuple[type, str]] = ((list, "an array"), (str, "a string"), (bool, "a boolean"))
    for kind, name in names:
        if isinstance(value, kind):
            return name
    return "null" if value is None else "a number"
