"""Dead letters (`/dead-letters`): grouped by reason, fixed in the page, requeued or discarded.

Everything goes through `worker.dlq.DeadLetters`, as `invoicer dlq` and
`/v1/dead-letters` do: the counts per reason and the filtered lists read its
maintained indexes; a requeue supersedes the old job (never a duplicate);
an edited payload is read and checked by the API's intake
(`worker.web.intake.checked_records`: the JSONL reader and the provider's
rules, as `invoicer enqueue`), so the page accepts exactly what a file would.
The exports are `DeadLetters.export_csv` (the entries, formula-safe cells)
and `DeadLetters.export_source` (the rows to fix, in the input format).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from jobs.models import Invoice
from jobs.sources import parse_json
from worker.cli.dlq_view import compact_payload
from worker.dead_letter import DeadLetter
from worker.dlq import DeadLetters
from worker.dlq_export import MixedSources
from worker.enqueue import EnqueueOutcome
from worker.intake import Intake
from worker.ledger import Ledger
from worker.web.context import Context
from worker.web.dashboard.access import Acting, Looking, Viewer
from worker.web.dashboard.render import back, csv_download, page
from worker.web.errors import ApiError
from worker.web.intake import checked_records

router = APIRouter()

PAGE = 50
SPOOL_BYTES = 1024 * 1024
OUTCOME_TEXT = {
    EnqueueOutcome.ACCEPTED: "requeued",
    EnqueueOutcome.SUPERSEDED: "requeued",
    EnqueueOutcome.DUPLICATE: "already queued",
    EnqueueOutcome.ALREADY_CREATED: "already created at the provider (stale entry dropped)",
    EnqueueOutcome.CONFLICT: "not requeued: active with other content",
}

Filter = Annotated[str | None, Query(min_length=1, max_length=200)]
Selected = Annotated[list[str] | None, Form()]
FormFilter = Annotated[str, Form(max_length=200)]


def _here(reason: str | None, batch: str | None) -> str:
    """The list's URL with its filters (for redirects after bulk actions)."""
    query = "&".join(f"{k}={v}" for k, v in (("reason", reason), ("batch", batch)) if v)
    return "/dead-letters" + (f"?{query}" if query else "")


@router.get("/dead-letters")
async def dead_letters(
    request: Request,
    ctx: Context,
    who: Looking,
    reason: Filter = None,
    batch: Filter = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    """Counts per reason, then the entries (newest first), filtered and paged."""
    queue = DeadLetters(ctx.redis, ctx.keys)
    entries = await queue.list(batch=batch, reason=reason, offset=offset, limit=PAGE)
    return page(
        request,
        who,
        "dead_letters.html",
        reasons=await queue.reason_counts(batch=batch),
        total=await queue.count(batch=batch),
        matching=await queue.count(batch=batch, reason=reason),
        entries=entries,
        reason=reason,
        batch=batch,
        offset=offset,
        page_size=PAGE,
    )


@router.get("/dead-letters/export.csv")
async def export(
    ctx: Context, who: Looking, reason: Filter = None, batch: Filter = None
) -> Response:
    """The (filtered) entries as CSV, spooled to disk past 1 MiB, then streamed."""
    spool = _spool()
    await DeadLetters(ctx.redis, ctx.keys).export_csv(spool, batch=batch, reason=reason)  # type: ignore[arg-type]
    name = "-".join(["dead-letters", *(v for v in (reason, batch) if v)])
    return csv_download(_chunks(spool), f"{name}.csv")


def _spool() -> tempfile.SpooledTemporaryFile[str]:
    """Memory up to 1 MiB, then disk: an export of many entries never sits in memory."""
    return tempfile.SpooledTemporaryFile(
        max_size=SPOOL_BYTES, mode="w+", newline="", encoding="utf-8"
    )


async def _chunks(spool: tempfile.SpooledTemporaryFile[str]) -> AsyncIterator[str]:
    spool.seek(0)
    with spool:
        while chunk := spool.read(SPOOL_BYTES):
            yield chunk


@router.get("/dead-letters/rows-to-fix")
async def rows_to_fix(
    request: Request, ctx: Context, who: Looking, reason: Filter = None, batch: Filter = None
) -> Response:
    """The rows the (filtered) entries were read from, in their input format, to fix and
    enqueue again (`invoicer dlq export --source`): a CSV with its header, or JSONL."""
    spool = _spool()
    try:
        done = await DeadLetters(ctx.redis, ctx.keys).export_source(
            spool,  # type: ignore[arg-type]
            batch=batch,
            reason=reason,
        )
    except MixedSources as exc:
        spool.close()
        return back(_here(reason, batch), f"{exc}: pick one batch first")
    if done.format is None:
        spool.close()
        return back(
            _here(reason, batch),
            "none of these dead letters holds rows from a file: only records refused "
            "when they were enqueued do (the others' payload is on their page)",
        )
    name = "-".join(["rows-to-fix", *(v for v in (batch, reason) if v)])
    media = "text/csv" if done.format == "csv" else "application/x-ndjson"
    return csv_download(_chunks(spool), f"{name}.{done.format}", media_type=media)


@router.post("/dead-letters/requeue")
async def requeue_selected(
    ctx: Context, who: Acting, key: Selected = None, back_to: FormFilter = ""
) -> Response:
    """Requeue the ticked entries (each as stored)."""
    key = key or []
    queue = DeadLetters(ctx.redis, ctx.keys)
    outcomes: dict[str, int] = {}
    for invoice_key in key:
        try:
            outcome = OUTCOME_TEXT[await queue.requeue(invoice_key)]
        except KeyError:
            outcome = "gone already"
        except ValueError:
            outcome = "left: needs a corrected payload"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return back(_safe(back_to), _summary("requeue", outcomes))


@router.post("/dead-letters/discard")
async def discard_selected(
    ctx: Context, who: Acting, key: Selected = None, back_to: FormFilter = ""
) -> Response:
    """Discard the ticked entries."""
    key = key or []
    queue = DeadLetters(ctx.redis, ctx.keys)
    discarded = sum([await queue.discard(invoice_key) for invoice_key in key])
    return back(_safe(back_to), f"discarded {discarded} of {len(key)} selected")


@router.post("/dead-letters/requeue-all")
async def requeue_all(
    ctx: Context, who: Acting, reason: FormFilter = "", batch: FormFilter = ""
) -> Response:
    """Requeue every entry of the filter (reason and/or batch; none: every entry)."""
    counts = await DeadLetters(ctx.redis, ctx.keys).requeue_many(
        batch=batch or None, reason=reason or None, all=not (batch or reason)
    )
    outcomes = {OUTCOME_TEXT[o]: n for o, n in counts.items()}
    return back(_here(reason or None, batch or None), _summary("requeue", outcomes))


@router.post("/dead-letters/discard-all")
async def discard_all(
    ctx: Context, who: Acting, reason: FormFilter = "", batch: FormFilter = ""
) -> Response:
    """Discard every entry of the filter (reason and/or batch; none: every entry)."""
    discarded = await DeadLetters(ctx.redis, ctx.keys).discard_many(
        batch=batch or None, reason=reason or None, all=not (batch or reason)
    )
    return back(_here(reason or None, batch or None), f"discarded {discarded:,}")


@router.get("/dead-letters/{invoice_key:path}")
async def entry(request: Request, ctx: Context, who: Looking, invoice_key: str) -> Response:
    """One entry: the payload (editable) beside the provider's answer, and its history."""
    found = await _entry(ctx, invoice_key)
    return await _entry_page(request, ctx, who, found, edited=None, problems=[])


@router.post("/dead-letters/{invoice_key:path}/requeue")
async def requeue(
    request: Request,
    ctx: Context,
    who: Acting,
    invoice_key: str,
    payload: Annotated[str | None, Form(max_length=1_000_000)] = None,
) -> Response:
    """Requeue one entry, with the payload as edited in the page (or as stored)."""
    found = await _entry(ctx, invoice_key)
    corrected = None
    if payload is not None and payload.strip():
        corrected, problems = _checked(found, payload)
        if corrected is None:
            return await _entry_page(
                request, ctx, who, found, edited=payload, problems=problems, status=422
            )
    try:
        outcome = await DeadLetters(ctx.redis, ctx.keys).requeue(invoice_key, payload=corrected)
    except KeyError:
        return back("/dead-letters", f"{invoice_key}: no longer a dead letter")
    except ValueError as exc:
        return await _entry_page(
            request, ctx, who, found, edited=payload, problems=[str(exc)], status=422
        )
    return back("/dead-letters", f"{invoice_key}: {OUTCOME_TEXT[outcome]}")


@router.post("/dead-letters/{invoice_key:path}/discard")
async def discard(ctx: Context, who: Acting, invoice_key: str) -> Response:
    """Give up on one entry (`rejected|in_doubt -> discarded`)."""
    done = await DeadLetters(ctx.redis, ctx.keys).discard(invoice_key)
    return back(
        "/dead-letters", f"{invoice_key}: {'discarded' if done else 'was not a dead letter'}"
    )


def _checked(found: DeadLetter, text: str) -> tuple[Invoice | None, list[str]]:
    """The edited invoice read and checked as a JSONL line would be, or its problems."""
    try:
        document = parse_json(text)
    except ValueError as exc:
        return None, [f"not valid JSON: {exc}"]
    if not isinstance(document, dict):
        return None, ["the payload must be one JSON object (an invoice)"]
    good, bad = checked_records([document], Intake(found.provider))
    if bad:
        return None, [f"{e.field or 'invoice'}: {e.message}" for e in bad]
    return good[0].invoice, []


async def _entry_page(
    request: Request,
    ctx: Context,
    who: Viewer,
    found: DeadLetter,
    *,
    edited: str | None,
    problems: list[str],
    status: int = 200,
) -> Response:
    history = await Ledger(ctx.redis, ctx.keys).history(found.invoice_key)
    return page(
        request,
        who,
        "dead_letter.html",
        status=status,
        entry=found,
        payload=edited if edited is not None else _readable(found.payload),
        problems=problems,
        history=history,
    )


def _readable(payload: str) -> str:
    """The stored invoice as `invoicer dlq show --payload-only` prints it: what a person edits."""
    shown = compact_payload(payload)
    return shown if isinstance(shown, str) else json.dumps(shown, indent=2, ensure_ascii=False)


async def _entry(ctx: Context, invoice_key: str) -> DeadLetter:
    found = await DeadLetters(ctx.redis, ctx.keys).get(invoice_key)
    if found is None:
        raise ApiError(
            404,
            "unknown_dead_letter",
            f"no dead letter {invoice_key!r}",
            fix="see /dead-letters: it may have been requeued or discarded",
        )
    return found


def _safe(back_to: str) -> str:
    return back_to if back_to.startswith("/dead-letters") else "/dead-letters"


def _summary(verb: str, outcomes: dict[str, int]) -> str:
    if not outcomes:
        return f"nothing to {verb}"
    return ", ".join(f"{n:,} {text}" for text, n in outcomes.items())
