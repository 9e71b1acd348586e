"""The one JSON error body every failed request gets, and the handlers that build it.

Every error, ours or the framework's, leaves as

    {"error": {"status": 422, "code": "invalid_request",
               "message": "what is wrong", "fix": "what to do about it",
               "problems": [{"index": 0, "field": "lines[0].quantity", "message": "..."}]}}

`problems` (and any extra fields a route adds) appear only where they say
something. Errors are translated here, once: routes raise `ApiError` (or let
`RequestValidationError` / Starlette's `HTTPException` happen) and never
build a response body themselves. An unexpected exception is a 500 that
names no internals (it is logged, and reported to Sentry when configured).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("invoicer.web")

_DEFAULT_FIX = {
    400: "correct the request as the message says",
    401: "send the header Authorization: Bearer <token>",
    403: "use a token that may do this",
    404: "check the path: GET /docs lists every endpoint",
    405: "check the method: GET /docs lists what each path takes",
    409: "see the message: the request contradicts what is already recorded",
    413: "send less at once",
    415: "send the content type the endpoint documents (GET /docs)",
    422: "fix the fields listed in problems and send again",
    500: "try again; if it persists, report it with the time of the request",
    503: "try again shortly",
}


class ApiError(Exception):
    """An error a route reports to its caller, translated to JSON by `install`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fix: str | None = None,
        problems: Sequence[Mapping[str, object]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: object,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fix = fix
        self.problems = list(problems) if problems else []
        self.headers = dict(headers or {})
        self.extra = extra


def error_body(
    status: int,
    code: str,
    message: str,
    *,
    fix: str | None = None,
    problems: Sequence[Mapping[str, object]] = (),
    **extra: object,
) -> dict[str, Any]:
    """The JSON document of one error."""
    error: dict[str, Any] = {
        "status": status,
        "code": code,
        "message": message,
        "fix": fix or _DEFAULT_FIX.get(status, "see the message"),
    }
    if problems:
        error["problems"] = list(problems)
    error.update(extra)
    return {"error": error}


def error_response(error: ApiError) -> JSONResponse:
    """The response of an `ApiError`."""
    body = error_body(
        error.status,
        error.code,
        error.message,
        fix=error.fix,
        problems=error.problems,
        **error.extra,
    )
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into `error_body`."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [_problem(e) for e in exc.errors()]
    first = problems[0] if problems else {"field": "request", "message": "invalid"}
    message = f"{first['field']}: {first['message']}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more)"
    return error_response(ApiError(422, "invalid_request", message, problems=problems))


def _problem(error: Mapping[str, Any]) -> dict[str, object]:
    loc = [str(part) for part in error.get("loc", ())]
    where = loc[0] if loc and loc[0] in ("query", "path", "header", "body", "cookie") else None
    field = ".".join(loc[1:] if where else loc) or (where or "request")
    problem: dict[str, object] = {"field": field, "message": str(error.get("msg", "invalid"))}
    if where:
        problem["in"] = where
    return problem


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
    code = codes.get(exc.status_code, "http_error")
    message = str(exc.detail) if exc.detail else code.replace("_", " ")
    headers = dict(exc.headers or {})
    return error_response(ApiError(exc.status_code, code, message, headers=headers))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The exception's text may hold anything (a payload, a URL): the caller
    # gets none of it; the log (scrubbed) and Sentry (scrubbed) get it all.
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    message = "an unexpected error happened on our side; nothing about your request was wrong"
    return error_response(ApiError(500, "internal_error", message))
