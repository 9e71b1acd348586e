"""The `invoicer` command.

Each module of this package registers one group of commands on the shared
Typer app. Exit codes everywhere: 0 all good, 1 some records failed, 2 a
usage or configuration error (with a message naming what to fix).

Every command's callback runs through `common.guarded`, and click's own
usage errors (a missing option, a bad value) are printed as one line too
(`_LazyGroup.main`): a usage or configuration error is one line naming what
to fix and exit 2, whichever command and whichever layer finds it.

Command modules are imported lazily, only when their command is looked up:
`invoicer enqueue` must not pay for importing the sandbox (FastAPI, uvicorn)
that `invoicer demo` needs. This module must therefore never import a command
module at import time; the list below names which module owns each command.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

# typer vendors its own click: the group's types are typer's, not the click package's.
from typer._click import ClickException, Command, Context
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import MarkupMode, TyperGroup

from worker.cli import common
from worker.log_format import LogFormat
from worker.observability import setup_logging

_COMMAND_MODULES: dict[str, str] = {
    "send": "direct",
    "enqueue": "queue",
    "worker": "queue",
    "status": "status",
    "report": "status",
    "cancel": "cancel",
    "pause": "operate",
    "resume": "operate",
    "sandbox": "sandbox",
    "demo": "demo",
    "dlq": "dlq",
    "refused": "refused",
    "duplicates": "duplicates",
    "redis": "operate",
    "web": "web",
}
"""Command name -> the `worker.cli` module whose `register(app)` adds it, in help order."""


class _LazyGroup(TyperGroup):
    """A Typer group that imports a command's module only when that command is needed."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(_COMMAND_MODULES)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        module_name = _COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        return _commands_of(module_name, self.rich_markup_mode).get(cmd_name)

    def get_help_option(self, ctx: Context) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""  # `--help`, not `--help <bool>` (see _plain_flags)
        return option

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's main, with its usage errors printed as one line (exit 2)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except NoArgsIsHelpError:
            sys.exit(common.EXIT_USAGE)  # the help is printed already
        except ClickException as exc:
            common.print_error(common.usage_line(exc))
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else common.EXIT_OK)


_loaded: dict[str, dict[str, Command]] = {}


def _commands_of(module_name: str, rich_markup_mode: MarkupMode) -> dict[str, Command]:
    """The click commands one module registers, built once per process."""
    if module_name not in _loaded:
        module = importlib.import_module(f"worker.cli.{module_name}")
        holder = typer.Typer(rich_markup_mode=rich_markup_mode, pretty_exceptions_enable=False)
        module.register(holder)
        holder.callback()(_no_options)  # always a group, even for a single command
        group = typer.main.get_group(holder)
        for command in group.commands.values():
            _guard(command)
        _loaded[module_name] = dict(group.commands)
    return _loaded[module_name]


def _guard(command: Command) -> None:
    """Run `command` (and every subcommand of a group) through `common.guarded`,
    and show its on/off flags without a type (`--burst`, not `--burst <bool>`)."""
    if command.callback is not None:
        command.callback = common.guarded(command.callback)
    _plain_flags(command)
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            _guard(sub)


def _plain_flags(command: Command) -> None:
    # Typer draws every option's type, `<bool>` for a flag that takes no
    # value; an empty metavar draws nothing. `--help` is made on first use.
    help_option = command.get_help_option(Context(command))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "is_flag", False):
            param.metavar = ""


def _no_options() -> None:
    """Placeholder callback: the holder app is never run itself."""


app = typer.Typer(
    name="invoicer",
    help="Create invoices in bulk at Maast and Stax, exactly once, from a Redis queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_LazyGroup,
)


@app.callback()
def _root(
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format",
            help="text or json (one JSON object per line); default INVOICER_LOG_FORMAT or text.",
        ),
    ] = None,
) -> None:
    # A callback makes Typer build a group (whose commands _LazyGroup supplies)
    # even though no command is registered on `app` itself.
    if log_format is not None:
        common.use_log_format(log_format)


def main() -> None:
    """Console-script entry point."""
    setup_logging()
    app(prog_name="invoicer")  # also under `python -m worker`
