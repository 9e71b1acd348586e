"""The reader process: a large file read, checked and serialised beside us.

For a large file, `FileReader` starts `python -c "...child_main()"`, which
reads the file (`jobs.sources.read_invoices`), runs every record through
intake (`worker.intake.prepared`: the provider's rules, the payload JSON, the
fingerprint, the key) and streams compact batches back over its standard
output. The parent then only packs script arguments and talks to Redis, so
parsing (one CPU) and enqueueing (the other CPU, and Redis) overlap; the
report is the one the same file gives when read in-process.

Why a plain subprocess and not `multiprocessing`: its "spawn" and
"forkserver" children re-import the parent's `__main__`, which for
`invoicer` is the whole CLI; this child imports only this module, intake,
the reader, the models and the provider rules (never Redis, never settings),
and it gets no API key in its environment.

Frames on the pipe: a 4-byte big-endian length, then a pickle of
`(kind, value)`; kinds are `items` (a list of `worker.intake.Taken`: prepared
invoices and `RecordError`s, in file order), `source_error` (the
`SourceError` message), `crash` (the exception; its traceback goes to stderr)
and `done` (records sent). Pickle is safe here: both ends are this program,
over a private pipe. This module must not talk to Redis or a provider.
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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO, cast

from jobs.models import Provider
from jobs.sources import Format, SourceError, read_invoices
from worker.intake import Intake, Taken, prepared

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

__all__ = [
    "PARALLEL_MIN_BYTES",
    "FileReader",
    "IntakeFailed",
    "child_main",
    "worth_a_process",
]


class IntakeFailed(RuntimeError):
    """The reader process stopped before the end of the file (crash, kill, bug)."""


def worth_a_process(path: Path) -> bool:
    """True when `path` is a regular file big enough to read in a reader process."""
    try:
        return path.is_file() and path.stat().st_size >= PARALLEL_MIN_BYTES
    except OSError:
        return False


# -- the child ---------------------------------------------------------------


def child_main(argv: list[str] | None = None) -> None:
    """Entry point of the reader process: `PATH PROVIDER ACCOUNT SEND(0|1) FORMAT`
    (FORMAT "": from the file's extension)."""
    path, provider, account, send, fmt = (argv if argv is not None else sys.argv[1:])[:5]
    # Frames go to the original stdout; anything printed by mistake goes to
    # stderr instead of corrupting them.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _widen_pipe(out)
    code = _INTERRUPTED  # Ctrl-C reaches the whole process group: the parent reports it
    with contextlib.suppress(KeyboardInterrupt, OSError):
        # OSError: a closed pipe means the parent is gone, nobody to tell.
        intake = Intake(Provider(provider), account, send == "1")
        code = _serve(out, Path(path), intake, cast(Format, fmt) or None)
        out.close()
    # os._exit: no interpreter teardown (freeing every object) on the way out.
    os._exit(code)


def _serve(out: BinaryIO, path: Path, intake: Intake, fmt: Format | None) -> int:
    """Stream the file's frames to `out`; the process exit code."""
    try:
        items = prepared(read_invoices(path, fmt=fmt), intake)
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


def _stream(out: BinaryIO, items: Iterator[Taken]) -> int:
    batch: list[Taken] = []
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

_CHILD_CODE = "from worker.reader import child_main; child_main()"
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
        cls, path: Path, intake: Intake, fmt: Format | None = None
    ) -> FileReader | None:
        """Start the reader process; None when no process can be started here.

        It checks the records with `intake.provider`'s own rules (`intake.rules`
        stays here: a process of its own cannot be handed a function).
        """
        if not sys.executable:
            return None
        send = "1" if intake.send else "0"
        args = [str(path), intake.provider.value, intake.account, send, fmt or ""]
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

    async def batches(self) -> AsyncIterator[list[Taken]]:
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

    async def _frame(self) -> tuple[str, list[Taken]]:
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
        frame: tuple[str, list[Taken]] = pickle.loads(body)  # our own child's frames
        return frame


def _child_env() -> dict[str, str]:
    """The environment minus our settings (API keys, the Redis URL and its password),
    with our packages importable from any working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_PREFIXES)}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env
