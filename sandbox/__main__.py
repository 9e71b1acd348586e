"""`python -m sandbox`: serve the sandbox from the command line.

Configuration comes from a JSON file (`--config`, a `SandboxConfig`), from
stdin (`--config-stdin`, used by `running_sandbox`) or from defaults, with
`--seed` overriding the fault seed. The `invoicer sandbox` CLI calls `serve`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sandbox.config import SandboxConfig
from sandbox.server import serve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--fd", type=int, help="serve on this listening socket")
    parser.add_argument("--seed", type=int, help="fault seed (overrides the config's)")
    parser.add_argument("--config", type=Path, help="a SandboxConfig JSON file")
    parser.add_argument("--config-stdin", action="store_true", help="read the config from stdin")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> SandboxConfig:
    """The configuration the arguments describe."""
    if args.config_stdin:
        config = SandboxConfig.model_validate_json(sys.stdin.buffer.read())
    elif args.config is not None:
        config = SandboxConfig.model_validate_json(args.config.read_bytes())
    else:
        config = SandboxConfig()
    if args.seed is not None:
        faults = config.faults.model_copy(update={"seed": args.seed})
        config = config.model_copy(update={"faults": faults})
    return config


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until interrupted."""
    args = parse_args(argv)
    serve(load_config(args), args.host, args.port, fd=args.fd, log_level=args.log_level)


if __name__ == "__main__":
    main()
