"""The lazy `invoicer` command table: complete, and cheap for `enqueue`."""

from __future__ import annotations

import importlib
import subprocess
import sys

import typer
from typer.main import get_command
from typer.testing import CliRunner

from worker import cli


def _registered_names(module_name: str) -> set[str]:
    holder = typer.Typer()
    importlib.import_module(f"worker.cli.{module_name}").register(holder)
    names = {info.name for info in holder.registered_commands}
    names |= {info.name for info in holder.registered_groups}
    return {name for name in names if name}


def test_the_table_names_exactly_what_each_module_registers() -> None:
    modules = set(cli._COMMAND_MODULES.values())
    for module_name in modules:
        expected = {n for n, m in cli._COMMAND_MODULES.items() if m == module_name}
        assert _registered_names(module_name) == expected, module_name


def test_every_command_resolves_and_help_lists_them_all() -> None:
    group = get_command(cli.app)
    ctx = typer.Context(group)
    for name in cli._COMMAND_MODULES:
        command = group.get_command(ctx, name)  # type: ignore[attr-defined]
        assert command is not None and command.name == name
    assert group.get_command(ctx, "nosuch") is None  # type: ignore[attr-defined]
    result = CliRunner().invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for name in cli._COMMAND_MODULES:
        assert f" {name} " in result.output


def test_enqueue_does_not_import_the_sandbox_or_arq() -> None:
    # A fresh interpreter: this test process has imported everything already.
    probe = (
        "import sys, typer; from typer.main import get_command; import worker.cli as c; "
        "g = get_command(c.app); g.get_command(typer.Context(g), 'enqueue'); "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'arq', 'worker.cli.demo', 'worker.web') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
