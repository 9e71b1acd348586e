"""The reader process of `enqueue_file` (`worker.reader`): the same report as the
in-process path, errors that reach the parent, no hang on a crash, Ctrl-C stops
both processes; and the in-process fallback."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

import worker.reader as file_reader
from jobs.models import Provider
from jobs.sources import Record, SourceError, read_invoices
from tests.worker.test_cli_enqueue import invoke
from worker import api
from worker.intake import Intake, prepared
from worker.keys import Keys
from worker.reader import FileReader, IntakeFailed
from worker.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
MONTH_END = ROOT / "samples" / "month-end.csv"
MAKE_MONTH_END = ROOT / "samples" / "make_month_end.py"


def settings_for(redis_url: str) -> Settings:
    return load_settings({"INVOICER_REDIS_URL": redis_url}, env_file=None)


def month_end(tmp_path: Path, count: int, invalid: int = 6) -> Path:
    path = tmp_path / f"month-end-{count}.csv"
    subprocess.run(
        [
            sys.executable,
            str(MAKE_MONTH_END),
            "--count",
            str(count),
            "--out",
            str(path),
            "--invalid",
            str(invalid),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


async def snapshot(
    redis: aioredis.Redis,
    path: Path,
    s: Settings,
    *,
    parallel: bool,
    send: bool = False,
    earlier_batch: str = "",
) -> tuple[dict[str, object], list[str]]:
    """The report (without its batch id) and the key names (batch id masked) of one run."""
    progress: list[int] = []
    report = await api.enqueue_file(
        path,
        provider=Provider.MAAST,
        settings=s,
        redis=redis,
        send=send,
        on_progress=progress.append,
        parallel=parallel,
    )
    data = report.as_dict()
    data.pop("batch_id")
    assert progress and progress == sorted(progress)

    def masked(text: str) -> str:
        text = text.replace(report.batch_id, "BATCH")
        return text.replace(earlier_batch, "EARLIER") if earlier_batch else text

    # The Redis instance check (worker.epoch) is written once per process, not per run.
    epoch = Keys(s.redis_prefix).epoch()
    names = sorted(masked(k.decode()) for k in await redis.keys() if k.decode() != epoch)
    # Ledger records and dead letters field by field (times aside): same
    # payloads, fingerprints, states, generations, field errors.
    hashes = [n for n in names if n.startswith(("invoicer:ledger:", "invoicer:dlq:"))]
    async with redis.pipeline(transaction=False) as pipe:
        for name in hashes:
            pipe.hgetall(name.replace("BATCH", report.batch_id))
        contents = await pipe.execute()
    for name, content in zip(hashes, contents, strict=True):
        fields = sorted(
            f"{name} {k.decode()}={masked(v.decode())}"
            for k, v in content.items()
            if not k.endswith(b"_ms")
        )
        names += fields
    return data, names


async def test_same_report_and_keys_as_in_process_on_the_month_end_sample(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    s = settings_for(redis_url)
    here = await snapshot(redis_client, MONTH_END, s, parallel=False, send=True)
    await redis_client.flushdb()
    there = await snapshot(redis_client, MONTH_END, s, parallel=True, send=True)
    assert there == here
    assert here[0]["invalid"] and here[0]["accepted"] == 994  # the sample's invalid rows
    assert here[0]["invalid_dead_lettered"]


async def test_same_report_with_duplicates_conflicts_and_invalid_rows(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    s = settings_for(redis_url)
    path = month_end(tmp_path, 3000)
    with_provider_refusals(path)
    records = [r for r in read_invoices(path) if isinstance(r, Record)]
    same = [r.invoice for r in records[:300]]
    changed = [r.invoice.model_copy(update={"currency": "EUR"}) for r in records[300:350]]
    results = []
    for parallel in (False, True):
        await redis_client.flushdb()
        before = await api.enqueue_invoices(
            same + changed, provider=Provider.MAAST, settings=s, redis=redis_client
        )
        assert before.accepted == 350
        run = await snapshot(
            redis_client, path, s, parallel=parallel, earlier_batch=before.batch_id
        )
        results.append(run)
    assert results[1] == results[0]
    report = results[0][0]
    assert report["duplicates"] == 300
    assert len(report["conflicts"]) == 50  # type: ignore[arg-type]
    assert report["invalid"]
    # Maast's own refusals are parked with the parsed invoice as payload.
    parked = [
        n for n in results[0][1] if n.startswith("invoicer:dlq:maast:X-") and " payload=" in n
    ]
    assert len(parked) == 2 and all('"number":"X-' in n for n in parked)


def with_provider_refusals(path: Path) -> None:
    """Append two invoices the model accepts and Maast refuses (quantity, number length)."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header, last = rows[0], rows[-1]
    quantity = header.index("quantity")
    big = [*last]
    big[0], big[quantity] = "X-BIG-QUANTITY", "1000"
    long_number = [*last]
    long_number[0] = "X-" + "9" * 30
    with path.open("a", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([big, long_number])


async def test_a_bad_header_raises_the_same_source_error(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("invoice_number,nonsense_column\nA,1\n", encoding="utf-8")
    s = settings_for(redis_url)
    messages = []
    for parallel in (False, True):
        with pytest.raises(SourceError) as caught:
            await api.enqueue_file(
                path, provider=Provider.MAAST, settings=s, redis=redis_client, parallel=parallel
            )
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "nonsense_column" in messages[0]


async def test_a_killed_reader_fails_clearly_instead_of_hanging(tmp_path: Path) -> None:
    reader = await FileReader.start(MONTH_END, Intake(Provider.MAAST, "default", send=False))
    assert reader is not None
    reader.process.kill()
    async with reader:
        with pytest.raises(IntakeFailed, match="exit code -9"):
            async with asyncio.timeout(30):
                async for _ in reader.batches():
                    pass


def test_an_unexpected_error_in_the_reader_becomes_a_crash_frame(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(file_reader, "prepared", broken)
    out = io.BytesIO()
    intake = Intake(Provider.MAAST, "default", send=False)
    assert file_reader._serve(out, MONTH_END, intake, None) == 1
    raw = out.getvalue()
    (length,) = struct.unpack(">I", raw[:4])
    assert pickle.loads(raw[4 : 4 + length]) == ("crash", "RuntimeError: boom")
    assert "Traceback" in capsys.readouterr().err


async def test_frames_follow_the_file_and_end_with_done(tmp_path: Path) -> None:
    reader = await FileReader.start(MONTH_END, Intake(Provider.MAAST, "eu", send=True))
    assert reader is not None
    items = []
    async with reader:
        async for batch in reader.batches():
            assert len(batch) <= file_reader.ITEMS_PER_FRAME
            items += batch
    assert reader.process.returncode == 0
    expected = list(prepared(read_invoices(MONTH_END), Intake(Provider.MAAST, "eu", send=True)))
    assert items == expected
    _line, number, args = next(i for i in items if isinstance(i, tuple))
    assert args[0] == f"maast@eu:{number}" and args[-1] == "1"


def test_small_files_and_missing_interpreters_stay_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not file_reader.worth_a_process(MONTH_END)  # 0.4 MB
    assert not file_reader.worth_a_process(tmp_path)  # a directory
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * file_reader.PARALLEL_MIN_BYTES)
    assert file_reader.worth_a_process(big)
    monkeypatch.setattr(sys, "executable", "")
    started = asyncio.run(FileReader.start(big, Intake(Provider.MAAST, "default", send=False)))
    assert started is None


async def test_no_process_falls_back_to_the_same_report(
    redis_client: aioredis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings_for(redis_url)
    monkeypatch.setattr(sys, "executable", "")
    report = await api.enqueue_file(
        MONTH_END, provider=Provider.MAAST, settings=s, redis=redis_client, parallel=True
    )
    assert report.accepted == 994


def test_the_reader_gets_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAAST_API_KEY", "sk-secret")
    monkeypatch.setenv("INVOICER_REDIS_URL", "redis://:pw@host/1")
    env = file_reader._child_env()
    assert "MAAST_API_KEY" not in env and "INVOICER_REDIS_URL" not in env
    assert str(ROOT) in env["PYTHONPATH"].split(os.pathsep)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40,000 valid invoices, ~17 MB: several seconds of reading."""
    return month_end(tmp_path_factory.mktemp("big"), 40_000, invalid=0)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


async def test_the_reader_waits_while_nobody_reads(big_csv: Path) -> None:
    reader = await FileReader.start(big_csv, Intake(Provider.MAAST, "default", send=False))
    assert reader is not None
    async with reader:
        batches = reader.batches()
        await anext(batches)
        # It fills the pipe and our read-ahead, then must block: idle (under
        # 3 ticks of 10 ms in a second) while still running, however long a
        # loaded machine takes it to get there.
        assert await _blocks(reader.process.pid, within_s=60), "the reader never blocked"
        assert reader.process.returncode is None
        for _ in range(60):  # 15,000 invoices: more than it could hold, so it resumed
            await anext(batches)
    assert reader.process.returncode == -signal.SIGKILL  # left early: killed, reaped


async def _blocks(pid: int, *, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        before = _cpu_ticks(pid)
        await asyncio.sleep(1)
        if _cpu_ticks(pid) - before <= 2:
            return True
    return False


def test_ctrl_c_stops_the_command_and_its_reader(redis_url: str, big_csv: Path) -> None:
    path = big_csv
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAAST_", "STAX_"))}
    env["INVOICER_REDIS_URL"] = redis_url
    command = [sys.executable, "-m", "worker", "enqueue", str(path), "--provider", "maast"]
    cli = subprocess.Popen(
        [*command, "--json"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own group, as a terminal would make it
    )
    try:
        deadline = time.monotonic() + 30
        while not _children(cli.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _children(cli.pid), "the reader process never started"
        time.sleep(0.5)
        os.killpg(cli.pid, signal.SIGINT)  # what Ctrl-C does: the whole group
        cli.wait(timeout=15)
        assert cli.returncode == 130  # as the in-process path: interrupted, quietly
        deadline = time.monotonic() + 5
        while _group_alive(cli.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group_alive(cli.pid), "the reader outlived the command"
    finally:
        if _group_alive(cli.pid):
            os.killpg(cli.pid, signal.SIGKILL)
        cli.wait()
        assert cli.stderr is not None
        cli.stderr.close()


def _children(pid: int) -> list[int]:
    try:
        raw = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in raw.split()]


def big_bad_header_csv(tmp_path: Path) -> Path:
    path = tmp_path / "bad-big.csv"
    filler = "A,1\n" * (file_reader.PARALLEL_MIN_BYTES // 4 + 1)
    path.write_text("invoice_number,nonsense_column\n" + filler, encoding="utf-8")
    return path


async def test_cli_bad_header_of_a_big_file_exits_2_with_the_reader_message(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    path = big_bad_header_csv(tmp_path)
    assert file_reader.worth_a_process(path)
    result = await invoke(redis_url, "enqueue", str(path), "--provider", "maast", "--json")
    assert result.exit_code == 2
    assert f"{path}:" in result.stderr and "nonsense_column" in result.stderr


async def test_cli_crashed_reader_exits_1_and_says_so(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = month_end(tmp_path, 6000, invalid=0)
    assert file_reader.worth_a_process(path)
    monkeypatch.setattr(file_reader, "_CHILD_CODE", "import os; os._exit(3)")
    result = await invoke(redis_url, "enqueue", str(path), "--provider", "maast", "--json")
    assert result.exit_code == 1
    assert "stopped before the end of the file (exit code 3)" in result.stderr
    assert "run the same command again" in result.stderr
