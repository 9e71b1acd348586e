"""A faithful local Maast + Stax server with fault injection, for tests and demos.

Maast is served under /platform/..., Stax at /invoice, /customer, and an
inspection and fault API under /_sandbox/ (see docs/sandbox.md). Never used
in production paths: jobs/providers/maast.py and stax.py do not import it.

    with running_sandbox(SandboxConfig()) as base_url:
        ...  # point the provider clients at base_url
"""

from sandbox.app import SandboxApp, create_app
from sandbox.client import SandboxClient
from sandbox.config import (
    DEFAULT_MAAST_FORBIDDEN_KEY,
    DEFAULT_MAAST_KEY,
    DEFAULT_STAX_KEY,
    Faults,
    FaultSpec,
    SandboxConfig,
)
from sandbox.server import running_sandbox, serve

__all__ = [
    "DEFAULT_MAAST_FORBIDDEN_KEY",
    "DEFAULT_MAAST_KEY",
    "DEFAULT_STAX_KEY",
    "FaultSpec",
    "Faults",
    "SandboxApp",
    "SandboxClient",
    "SandboxConfig",
    "create_app",
    "running_sandbox",
    "serve",
]
