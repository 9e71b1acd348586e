"""HTTP intake: a request body in, checked records out, through the CLI's own rules.

`POST /v1/invoices` takes one JSON document (an envelope with the provider,
the batch name, `send`, a callback and the invoices). Its invoices are read
by `jobs.sources.read_objects`, the JSONL reader's rules applied to values
(the n-th invoice is "line" n, so errors read as they do for a file), and
checked by `worker.intake.prepare` with the provider's own rules, exactly
what `invoicer enqueue` does per record. Enqueueing is `worker.api`'s (all
or nothing: `worker.atomic_enqueue`).
Nothing here decides what a valid invoice is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobs.models import Provider
from jobs.sources import Record, RecordError, parse_json, read_objects
from worker import atomic_enqueue
from worker.intake import Intake, prepare
from worker.settings import Settings
from worker.web.errors import ApiError

M = TypeVar("M", bound=BaseModel)

MAX_INVOICES = atomic_enqueue.MAX_INVOICES
"""Invoices per request (one atomic step): a larger set is a file (`POST /v1/batches`)."""
MAX_BODY_BYTES = 32 * 1024 * 1024
"""Largest request body read (about 1,000 large invoices)."""


class Envelope(BaseModel):
    """What `POST /v1/invoices` takes besides the invoices (checked before them)."""

    model_config = ConfigDict(extra="forbid")

    provider: Provider
    invoices: list[Any] | dict[str, Any]
    batch: str | None = Field(default=None, min_length=1, max_length=200)
    send: bool = False
    callback_url: str | None = Field(default=None, min_length=1, max_length=2000)
    notify: Literal["batch", "each"] = "batch"


class EnvelopeDoc(BaseModel):
    """The request body of `POST /v1/invoices` (as OpenAPI shows it)."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["maast", "stax"] = Field(description="The provider to create them at.")
    invoices: list[dict[str, Any]] | dict[str, Any] = Field(
        description="One invoice or a list of at most 1,000: each in the neutral shape "
        "(`jobs.models.Invoice`) or a provider create body tagged with `provider`, as one "
        "JSONL line (docs/input-formats.md)."
    )
    batch: str | None = Field(default=None, description="A name for the batch.")
    send: bool = Field(default=False, description="Send each invoice once created.")
    callback_url: str | None = Field(
        default=None, description="http(s) URL that gets signed result webhooks."
    )
    notify: Literal["batch", "each"] = Field(
        default="batch",
        description="batch: one webhook when the batch completes; each: also one per invoice.",
    )


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 past `limit` bytes (never read whole first)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_model(body: bytes, model: type[M]) -> M:
    """`body` as a JSON object of `model` (numbers exact); 400 if not JSON, 422 if wrong."""
    try:
        document = parse_json(body)
    except ValueError as exc:
        raise ApiError(
            400, "invalid_json", f"the body is not valid JSON: {exc}", fix="send one JSON object"
        ) from None
    if not isinstance(document, dict):
        raise ApiError(
            422,
            "invalid_request",
            "the body must be a JSON object",
            problems=[{"field": "body", "message": "expected a JSON object"}],
        )
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems: list[dict[str, object]] = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(422, "invalid_request", _first(problems), problems=problems) from None


def envelope_of(body: bytes) -> tuple[Envelope, list[Any]]:
    """The envelope and its invoices (raw JSON values); 400/422 for a bad document."""
    envelope = parse_model(body, Envelope)
    invoices = envelope.invoices if isinstance(envelope.invoices, list) else [envelope.invoices]
    if not invoices:
        raise ApiError(
            422,
            "invalid_request",
            "invoices is empty",
            problems=[{"field": "invoices", "message": "give at least one invoice"}],
        )
    if len(invoices) > MAX_INVOICES:
        raise ApiError(
            413,
            "too_many_invoices",
            f"{len(invoices):,} invoices in one request; at most {MAX_INVOICES:,}",
            fix="split the list, or upload them as a file to POST /v1/batches",
        )
    return envelope, invoices


def checked_records(
    invoices: Iterable[object], intake: Intake
) -> tuple[list[Record], list[RecordError]]:
    """Every invoice read and checked as `invoicer enqueue` would: (valid, errors).

    Nothing is written: `worker.api.enqueue_invoices` then takes the valid
    records (and, with `partial`, the errors, which it reports and parks).
    """
    good: list[Record] = []
    bad: list[RecordError] = []
    for item in read_objects(invoices):
        result = prepare(item, intake)
        if isinstance(result, list):
            bad.extend(result)
        else:
            assert isinstance(item, Record)
            good.append(item)
    return good, bad


def problems_of(errors: Sequence[RecordError]) -> list[dict[str, object]]:
    """Record errors as API problems, by record index (from 0) and field."""
    return [
        {
            "index": e.line - 1,
            "invoice_number": e.invoice_number,
            "field": e.field or "invoice",
            "message": e.message,
        }
        for e in errors
    ]


def _first(problems: Sequence[dict[str, object]]) -> str:
    head = f"{problems[0]['field']}: {problems[0]['message']}"
    return head if len(problems) == 1 else f"{head} (and {len(problems) - 1} more)"


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"the body is larger than {limit // (1024 * 1024)} MiB",
        fix="send at most 1,000 invoices per request, or upload a file to POST /v1/batches",
    )


def check_callback(url: str, settings: Settings) -> None:
    """Refuse (422) a callback URL we could not deliver to, or could not sign for."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(
            422,
            "invalid_request",
            "callback_url must be an http or https URL with a host",
            problems=[{"field": "callback_url", "message": "not an http(s) URL"}],
        )
    if settings.webhook_secret is None:
        raise ApiError(
            422,
            "webhooks_not_configured",
            "callbacks are signed, and INVOICER_WEBHOOK_SECRET is not set on this server",
            fix="set INVOICER_WEBHOOK_SECRET (the same value on the workers), or omit callback_url",
            problems=[{"field": "callback_url", "message": "no webhook secret configured"}],
        )
