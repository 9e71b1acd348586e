"""File intake: read, validate and serialise a file's invoices, here or in a child process.

This module owns turning records into what the enqueue script takes (the
`script_item` arguments), and the *reader process*: for a large file,
`FileReader` starts `python -c "...child_main()"`, which reads the file
(`jobs.sources.read_invoices`), applies the provider's own rules and
serialises each invoice (payload JSON, fingerprint, key), and streams compact
batches back over its standard output. The parent then only packs script
arguments and talks to Redis, so parsing (one CPU) and enqueueing (the other
CPU, and Redis) overlap.

Why a plain subprocess and not `multiprocessing`: its "spawn" and
"forkserver" children re-import the parent's `__main__`, which for
`invoicer` is the whole CLI; this child imports only this module, the reader,
the models and the provider rules (never Redis, never settings), and it gets
no API key in its environment.

Frames on the pipe: a 4-byte big-endian length, then a pickle of
`(kind, value)`; kinds are `items` (a list of `Prepared` tuples and
`RecordError`s, in file order), `source_error` (the `SourceError` message),
`crash` (the exception; its traceback goes to stderr) and `done` (records
sent). Pickle is safe here: both ends are this program, over a private pipe.
This module must not talk to Redis or a provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import struct
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeAlias

from jobs.errors import FieldError, InvoiceInvalid
from jobs.models import Invoice, Provider, fingerprint_of
from jobs.sources import Record, RecordError, SourceError, read_invoices
from worker.keys import invoice_key

PARALLEL_MIN_BYTES = 2 * 1024 * 1024
"""Files smaller than this are read in-process: the reader process costs ~0.4 s
to start (its imports), about what reading 2 MB (~5,000 invoices) takes."""
ITEMS_PER_FRAME = 250
"""Records per frame: big enough that pickling is per batch, small enough
(~250 KB) that the parent starts enqueueing early and memory stays flat."""
READ_AHEAD_BYTES = 8 * 1024 * 1024
"""How far the reader process may run ahead of Redis (in memory here, ~8,000
invoices) before it waits: it must not stall while we wait for a reply, nor
fill our memory with a whole file."""
_PIPE_BYTES = 1024 * 1024
_LENGTH = struct.Struct(">I")
_INTERRUPTED = 130

Prepared: TypeAlias = tuple[int, str, list[str | bytes]]
"""A valid invoice ready for the enqueue script: (line, invoice number, `script_item`)."""
Intake: TypeAlias = Prepared | RecordError
Validate: TypeAlias = Callable[[Invoice], None]

__all__ = [
    "PARALLEL_MIN_BYTES",
    "FileReader",
    "IntakeFailed",
    "Prepared",
    "checked",
    "child_main",
    "prepared",
    "script_item",
    "worth_a_process",
]


class IntakeFailed(RuntimeError):
    """The reader process stopped before the end of the file (crash, kill, bug)."""


def script_item(invoice: Invoice, *, provider: Provider, account: str) -> list[str | bytes]:
    """One invoice's enqueue script arguments (its JSON computed once, here, and hashed)."""
    # model_dump_json() as UTF-8 bytes, without its decode: hashed and sent
    # to Redis as bytes, so nothing encodes it back (this runs per invoice).
    payload = invoice.__pydantic_serializer__.to_json(invoice)
    return [
        invoice_key(provider, account, invoice.number),
        fingerprint_of(payload),
        payload,
        invoice.number,
        "1" if invoice.send else "0",
    ]


def checked(record: Record, provider: Provider, validate: Validate) -> list[Record | RecordError]:
    """The record, or one `RecordError` per problem the provider's rules find."""
    number = record.invoice.number
    if record.provider is not None and record.provider is not provider:
        message = f"holds a {record.provider.value} request but the batch is for {provider.value}"
        return [RecordError(record.line, message, field="provider", invoice_number=number)]
    try:
        validate(record.invoice)
    except InvoiceInvalid as exc:
        problems = exc.field_errors or (FieldError("invoice", exc.message),)
        return [
            RecordError(
                record.line,
                problem.message,
                field=problem.field,
                invoice_number=number,
                invoice=record.invoice,
            )
            for problem in problems
        ]
    return [record]


def prepared(
    items: Iterable[Record | RecordError], *, provider: Provider, account: str, send: bool
) -> Iterator[Intake]:
    """Checked records as `Prepared` tuples (invoice forced to send with `send`), errors as is."""
    # Imported here: the provider package loads the HTTP clients, which the
    # parent of a reader process never needs (and must not wait for).
    from jobs.providers import validator

    validate = validator(provider)
    for item in items:
        if isinstance(item, RecordError):
            yield item
            continue
        for result in checked(item, provider, validate):
            if isinstance(result, RecordError):
                yield result
                continue
            invoice = result.invoice
            if send:
                invoice = invoice.model_copy(update={"send": True})
            args = script_item(invoice, provider=provider, account=account)
            yield (result.line, invoice.number, args)


def worth_a_process(path: Path) -> bool:
    """True when `path` is a regular file big enough to read in a reader process."""
    try:
        return path.is_file() and path.stat().st_size >= PARALLEL_MIN_BYTES
    except OSError:
        return False


# -- the child ---------------------------------------------------------------


def child_main(argv: list[str] | None = None) -> None:
    """Entry point of the reader process: `PATH PROVIDER ACCOUNT SEND(0|1)`."""
    path, provider, account, send = (argv if argv is not None else sys.argv[1:])[:4]
    # Frames go to the original stdout; anything printed by mistake goes to
    # stderr instead of corrupting them.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _widen_pipe(out)
    code = _INTERRUPTED  # Ctrl-C reaches the whole process group: the parent reports it
    with contextlib.suppress(KeyboardInterrupt, OSError):
        # OSError: a closed pipe means the parent is gone, nobody to tell.
        code = _serve(out, Path(path), Provider(provider), account, send == "1")
        out.close()
    # os._exit: no interpreter teardown (freeing every object) on the way out.
    os._exit(code)


def _serve(out: BinaryIO, path: Path, provider: Provider, account: str, send: bool) -> int:
    """Stream the file's frames to `out`; the process exit code."""
    try:
        items = prepared(read_invoices(path), provider=provider, account=account, send=send)
        _write(out, "done", _stream(out, items))
    except SourceError as exc:
        _write(out, "source_error", str(exc))
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except Exception as exc:  # whatever it is, the parent must hear of it
        traceback.print_exc()  # the details, on the stderr we share with the parent
        _write(out, "crash", f"{type(exc).__name__}: {exc}")
        return 1
    return 0


def _widen_pipe(out: BinaryIO) -> None:
    """A larger pipe (Linux): fewer stalls while the parent is busy with Redis."""
    try:
        import fcntl  # not on Windows
    except ImportError:
        return
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):  # above the system's maximum: keep the default
            fcntl.fcntl(out.fileno(), set_size, _PIPE_BYTES)


def _stream(out: BinaryIO, items: Iterator[Intake]) -> int:
    batch: list[Intake] = []
    sent = 0
    for item in items:
        batch.append(item)
        if len(batch) >= ITEMS_PER_FRAME:
            _write(out, "items", batch)
            sent += len(batch)
            batch = []
    if batch:
        _write(out, "items", batch)
        sent += len(batch)
    return sent


def _write(out: BinaryIO, kind: str, value: object) -> None:
    body = pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LENGTH.pack(len(body)) + body)
    out.flush()


# -- the parent --------------------------------------------------------------

_CHILD_CODE = "from worker.intake import child_main; child_main()"
_SETTINGS_PREFIXES = ("MAAST_", "STAX_", "INVOICER_")


class FileReader:
    """The reader process of one file, as an async iterator of batches (parent side).

    Use `async with reader: async for batch in reader.batches(): ...`.
    Leaving the block (normally, on error or on cancellation) kills the
    process if it is still running and reaps it.
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.finished = False

    @classmethod
    async def start(
        cls, path: Path, *, provider: Provider, account: str, send: bool
    ) -> FileReader | None:
        """Start the reader process; None when no process can be started here."""
        if not sys.executable:
            return None
        args = [str(path), provider.value, account, "1" if send else "0"]
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _CHILD_CODE,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                env=_child_env(),
                limit=READ_AHEAD_BYTES // 2,  # asyncio stops reading the pipe at twice this
            )
        except (OSError, NotImplementedError):
            return None
        return cls(process)

    async def __aenter__(self) -> FileReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Kill the process unless it finished, and reap it."""
        if self.process.returncode is None and not self.finished:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()

    async def batches(self) -> AsyncIterator[list[Intake]]:
        """Each batch of records in file order; raises `SourceError` or `IntakeFailed`."""
        while True:
            kind, value = await self._frame()
            if kind == "items":
                yield value
            elif kind == "done":
                self.finished = True
                return
            elif kind == "source_error":
                self.finished = True
                raise SourceError(value)
            else:
                self.finished = True
                raise IntakeFailed(f"the file reader process failed ({value})")

    async def _frame(self) -> tuple[str, list[Intake]]:
        stream = self.process.stdout
        assert stream is not None
        try:
            header = await stream.readexactly(_LENGTH.size)
            body = await stream.readexactly(_LENGTH.unpack(header)[0])
        except asyncio.IncompleteReadError:
            code = await self.process.wait()
            if code in (_INTERRUPTED, -signal.SIGINT):
                # Ctrl-C hit the whole process group: stop like the in-process path.
                raise KeyboardInterrupt from None
            raise IntakeFailed(
                f"the file reader process stopped before the end of the file (exit code {code})"
            ) from None
        frame: tuple[str, list[Intake]] = pickle.loads(body)  # our own child's frames
        return frame


def _child_env() -> dict[str, str]:
    """The environment minus our settings (API keys, the Redis URL and its password),
    with our packages importable from any working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_PREFIXES)}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env
