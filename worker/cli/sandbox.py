"""`invoicer sandbox`: serve the local Maast + Stax sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from sandbox.config import (
    DEFAULT_MAAST_KEY,
    DEFAULT_STAX_KEY,
    SandboxConfig,
)
from sandbox.server import serve
from worker.cli import common


def register(app: typer.Typer) -> None:
    """Add `sandbox` to the app."""
    app.command("sandbox")(sandbox)


def sandbox(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    config: Annotated[
        Path | None, typer.Option(help="A SandboxConfig JSON file (faults, limits, switches).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the fault draws.")] = None,
) -> None:
    """Serve a local server that behaves like Maast and Stax (see docs/sandbox.md)."""
    try:
        cfg = SandboxConfig.model_validate_json(config.read_bytes()) if config else SandboxConfig()
    except (OSError, ValidationError) as exc:
        common.fail(f"{config}: {exc}")
    if seed is not None:
        cfg = cfg.model_copy(update={"faults": cfg.faults.model_copy(update={"seed": seed})})
    base = f"http://{host}:{port}"
    common.err.print(
        f"sandbox on {base}\n"
        f"  MAAST_BASE_URL={base} MAAST_API_KEY={DEFAULT_MAAST_KEY}\n"
        f"  STAX_BASE_URL={base} STAX_API_KEY={DEFAULT_STAX_KEY}\n"
        f"  inspect: {base}/_sandbox/stats   Ctrl-C stops",
        highlight=False,
    )
    serve(cfg, host, port)
