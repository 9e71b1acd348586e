"""The `invoicer` command.

Each module of this package registers one group of commands on the shared
Typer app. Exit codes everywhere: 0 all good, 1 some records failed, 2 a
usage or configuration error (with a message naming what to fix).
"""

from __future__ import annotations

import typer

from worker.cli import demo, direct, dlq, operate, queue, status
from worker.cli import sandbox as sandbox_cmd
from worker.observability import setup_logging

app = typer.Typer(
    name="invoicer",
    help="Create invoices in bulk at Maast and Stax, exactly once, from a Redis queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (direct, queue, status, dlq, operate, sandbox_cmd, demo):
    module.register(app)


def main() -> None:
    """Console-script entry point."""
    setup_logging()
    app()
