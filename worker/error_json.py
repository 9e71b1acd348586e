"""An `ErrorInfo` as the JSON we store: a ledger record's `error`, a dead letter's field errors.

Written by the worker that failed, read back by status, reports, the
dead-letter queue and the dashboard: one encoding, both ways.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from jobs.errors import ErrorInfo, FieldError


def error_to_json(error: ErrorInfo) -> str:
    """`ErrorInfo` as the JSON stored in the ledger."""
    return json.dumps(
        {
            "kind": error.kind,
            "reason": error.reason,
            "message": error.message,
            "status": error.status,
            "code": error.code,
            "field_errors": field_errors_to_list(error.field_errors),
        }
    )


def error_from_json(text: str) -> ErrorInfo:
    """The inverse of `error_to_json`."""
    data = json.loads(text)
    return ErrorInfo(
        kind=data["kind"],
        reason=data["reason"],
        message=data["message"],
        status=data.get("status"),
        code=data.get("code"),
        field_errors=tuple(field_errors_from_list(data.get("field_errors") or [])),
    )


def field_errors_to_list(errors: Iterable[FieldError]) -> list[dict[str, str]]:
    """Field errors as plain JSON-able dicts."""
    return [{"field": e.field, "message": e.message} for e in errors]


def field_errors_from_list(items: Iterable[Mapping[str, str]]) -> list[FieldError]:
    """The inverse of `field_errors_to_list`."""
    return [FieldError(field=i["field"], message=i["message"]) for i in items]
