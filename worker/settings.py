"""Settings: the only module that reads the environment.

`load_settings()` reads `os.environ` (and an optional `.env` file, whose
values the real environment overrides) once, into frozen pydantic models that
are passed to everything else. API keys and passwords are `SecretStr`: their
`repr` and `str` print `**********`.

The *project directory* is found the way git finds a repository: the nearest
of the current directory and its parents that holds a `.env` file or an
`.invoicer/` directory (else the current directory). Its `.env` is read and
its `.invoicer/` is the default data directory, so every command run from
anywhere inside the project reaches the same embedded Redis
(docs/operations.md, "Which Redis").
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from jobs.errors import ConfigurationError
from jobs.models import Provider

MIN_TOKEN_CHARS = 16
"""Shortest bearer token or webhook secret accepted: a guessable one is no lock."""
LANDING_MARGIN_S = 5.0
"""The least a landing window must exceed connect + read timeout by."""
_TOKEN_CHARS = re.compile(r"[!#-&(-~]+")
"""Printable ASCII except space, `"` and `'` (quotes are a pasting accident)."""
ENV_FILE_NAME = ".env"
DATA_DIR_NAME = ".invoicer"
FIND_PROJECT: Literal["project"] = "project"
"""`load_settings(env_file=...)`: the `.env` of the project directory (the default)."""
_DB_NUMBER = re.compile(r"[0-9]+")


def secret_problem(text: str) -> str | None:
    """What makes `text` unusable as a key in an HTTP header, in words that
    never repeat it; `None` when it is printable ASCII without spaces or quotes."""
    if _TOKEN_CHARS.fullmatch(text):
        return None
    if not text.isascii():
        why = "a character that is not plain ASCII (a curly quote or dash pasted with it?)"
    elif any(c.isspace() for c in text):
        why = "whitespace (a space or line break pasted with it?)"
    elif not text.isprintable():
        why = "a control character"
    else:
        why = "a quote"
    return f"must be printable ASCII without spaces or quotes; it holds {why}"


def base_url_problem(url: str) -> str | None:
    """What is wrong with a provider base URL (`None`: usable)."""
    example = "e.g. https://api-test.maast.com or http://127.0.0.1:8900"
    if not url.isascii() or not url.isprintable() or " " in url:
        return f"must be plain ASCII without spaces ({example})"
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        return f"must start with http:// or https:// ({example})"
    try:
        parsed.port  # noqa: B018 (the property raises on a bad port)
    except ValueError:
        return f"the port is not a number from 0 to 65535 ({example})"
    if not parsed.hostname:
        return f"names no host ({example})"
    if parsed.query or parsed.fragment:
        return f"must not hold a query or fragment ({example})"
    return None


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProviderSettings(_Frozen):
    """How to reach one provider account, and how fast we may go."""

    provider: Provider
    api_key: SecretStr | None = None
    base_url: str
    account: str = "default"
    """Names the provider account in idempotency keys, limits and pauses."""
    rate_per_minute: float | None = Field(default=None, gt=0)
    """The shared request budget; `None` means no limit (Maast publishes none)."""
    failed_per_minute: int | None = Field(default=None, gt=0)
    """Failed (4xx) requests allowed per minute before we pause (Stax blocks at 10)."""
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=100, gt=0)

    @field_validator("api_key")
    @classmethod
    def _key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # A key goes into an HTTP header: a pasted curly quote or a stray
        # space would fail there, on every request, with the key in the
        # exception. Refused here instead, naming the variable, never the value.
        if value is not None:
            problem = secret_problem(value.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url_shape(cls, value: str) -> str:
        problem = base_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @property
    def key_variable(self) -> str:
        """The environment variable that holds this provider's key."""
        return f"{self.provider.upper()}_API_KEY"

    @property
    def base_url_variable(self) -> str:
        """The environment variable that holds this provider's base URL."""
        return f"{self.provider.upper()}_BASE_URL"

    def require_key(self) -> SecretStr:
        """The API key, or a `ConfigurationError` naming the variable to set."""
        if self.api_key is None or not self.api_key.get_secret_value():
            raise ConfigurationError(f"{self.key_variable} is not set: {self.provider} needs it")
        return self.api_key


class RetrySettings(_Frozen):
    """The budget of one invoice: how often and how long we keep trying."""

    max_attempts: int = Field(default=8, ge=1)
    max_age_s: float = Field(default=24 * 3600, gt=0)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_cap_s: float = Field(default=300.0, gt=0)


class Settings(_Frozen):
    """Everything invoicer is configured with."""

    redis_url: SecretStr | None = None
    """`None`: start an embedded Redis in `data_dir`."""
    redis_prefix: str = "invoicer:"
    data_dir: Path = Path(".invoicer")
    maast: ProviderSettings
    stax: ProviderSettings
    retry: RetrySettings = RetrySettings()
    lease_s: float = Field(default=10.0, gt=0)
    """How long a worker's hold on a job lasts without a heartbeat."""
    landing_window_s: float = Field(default=300.0, gt=0)
    """How long after a create request left the provider may still process it
    (docs/operations.md, "The landing window"): at least connect + read
    timeout + `LANDING_MARGIN_S`."""
    recovery_extra: int = Field(default=500, ge=0)
    """After Redis came back without some acknowledged writes, invoices looked up
    first per queue beyond twice the slots of the workers alive
    (docs/operations.md, "Redis")."""
    poll_delay_s: float = Field(default=0.02, gt=0)
    concurrency: int = Field(default=100, gt=0)
    shutdown_wait_s: int = Field(default=30, ge=0)
    sentry_dsn: SecretStr | None = None
    admin_token: SecretStr | None = None
    """Bearer token of `invoicer web` that may act (enqueue, cancel, requeue, pause)."""
    read_token: SecretStr | None = None
    """Bearer token of `invoicer web` that may only read."""
    webhook_secret: SecretStr | None = None
    """HMAC key that signs result webhooks (`Invoicer-Signature`)."""
    log_format: Literal["text", "json"] = "text"
    arq_provider: Provider = Provider.MAAST
    """The queue `arq worker.app.WorkerSettings` drains."""

    def provider(self, provider: Provider) -> ProviderSettings:
        """The settings of one provider."""
        return self.maast if provider is Provider.MAAST else self.stax

    @field_validator("redis_url")
    @classmethod
    def _redis_url_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, not at the first connection: redis-py raises a bare
        # ValueError there, or quietly uses database 0 for `/seven`. The
        # message never echoes the URL (it may hold a password).
        if value is not None:
            problem = redis_url_problem(value.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("admin_token", "read_token", "webhook_secret")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here so a pasted curly quote or a short token fails at start,
        # naming the variable; the message never echoes the value.
        if value is None:
            return None
        text = value.get_secret_value()
        if len(text) < MIN_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_TOKEN_CHARS} characters")
        if not _TOKEN_CHARS.fullmatch(text):
            raise ValueError("must be printable ASCII without spaces or quotes")
        return value

    @model_validator(mode="after")
    def _window_covers_a_request(self) -> Settings:
        # A window shorter than our own wait for an answer would let a
        # lookup run while the request it looks for is still being answered.
        least = max(
            p.connect_timeout_s + p.read_timeout_s + LANDING_MARGIN_S
            for p in (self.maast, self.stax)
        )
        if self.landing_window_s < least:
            raise ValueError(
                f"invalid setting INVOICER_LANDING_WINDOW_S: {self.landing_window_s:g} s is "
                f"shorter than connect + read timeout + {LANDING_MARGIN_S:g} s = {least:g} s: "
                "raise it (default 300) or lower INVOICER_READ_TIMEOUT_S"
            )
        return self

    @model_validator(mode="after")
    def _tokens_differ(self) -> Settings:
        admin, read = self.admin_token, self.read_token
        if admin is not None and read is not None and admin == read:
            raise ValueError(
                "invalid setting INVOICER_READ_TOKEN: it equals INVOICER_ADMIN_TOKEN, "
                "so a reader could act: give them different values"
            )
        return self


def redis_url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL, in words that never repeat it; None if usable."""
    example = (
        "e.g. redis://localhost:6379/0, rediss://:PASSWORD@host:6380/2, unix:///run/redis.sock"
    )
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss", "unix"):
        return f"must start with redis://, rediss:// or unix:// ({example})"
    if parsed.scheme == "unix":
        return None if parsed.path else f"a unix:// URL needs the socket's path ({example})"
    try:
        parsed.port  # noqa: B018 (the property raises on a bad port)
    except ValueError:
        return f"the port is not a number from 0 to 65535 ({example})"
    if not parsed.hostname:
        return f"names no host ({example})"
    db = parsed.path.strip("/")
    if db and not _DB_NUMBER.fullmatch(db):
        return f"the database after the last '/' must be a number ({example})"
    return None


def project_dir(start: Path | None = None) -> Path:
    """The nearest of `start` (default: the current directory) and its parents
    holding `.env` or `.invoicer/`; `start` itself when none does."""
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        if (folder / ENV_FILE_NAME).is_file() or (folder / DATA_DIR_NAME).is_dir():
            return folder
    return here


def read_env_file(path: Path | None) -> dict[str, str]:
    """`KEY=VALUE` lines of a `.env` file; blank lines and `#` comments skipped."""
    values: dict[str, str] = {}
    if path is None or not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: Path | Literal["project"] | None = FIND_PROJECT,
) -> Settings:
    """Build `Settings` from the environment, over an optional `.env` file.

    Args:
        environ: default `os.environ`.
        env_file: the `.env` to read; by default the project directory's
            (module docstring), whose `.invoicer/` is then the default data
            directory; `None`: no file.

    A relative `INVOICER_DATA_DIR` is taken from the current directory when
    it comes from the environment, from the `.env` file's directory when it
    comes from that file.

    Raises:
        ConfigurationError: a value is malformed (the message names the variable).
    """
    if env_file == FIND_PROJECT:
        env_file = project_dir() / ENV_FILE_NAME
    base = None if env_file is None else env_file.absolute().parent
    from_file = read_env_file(env_file)
    given = os.environ if environ is None else environ
    env = {**from_file, **given}
    if base is not None:
        env["INVOICER_DATA_DIR"] = str(_data_dir(given, from_file, base))
    try:
        return _build(env)
    except ValidationError as exc:
        raise ConfigurationError(_invalid(exc)) from None
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def _data_dir(given: Mapping[str, str], from_file: Mapping[str, str], base: Path) -> Path:
    """INVOICER_DATA_DIR as an absolute path (see `load_settings`)."""
    if given.get("INVOICER_DATA_DIR"):
        return Path(given["INVOICER_DATA_DIR"]).absolute()
    if from_file.get("INVOICER_DATA_DIR"):
        return base / from_file["INVOICER_DATA_DIR"]
    return base / DATA_DIR_NAME


_PER_PROVIDER = frozenset(
    {"api_key", "base_url", "account", "rate_per_minute", "failed_per_minute"}
)


def _invalid(exc: ValidationError, provider: Provider | None = None) -> str:
    """The first problem, naming the environment variable the operator must fix."""
    first = exc.errors()[0]
    name = str(first["loc"][-1]) if first["loc"] else "settings"
    if provider is not None and name in _PER_PROVIDER:
        variable = f"{provider.upper()}_{name.upper()}"
    elif name == "sentry_dsn":
        variable = "SENTRY_DSN"
    elif name == "settings" or not first["loc"]:
        return str(first["msg"]).removeprefix("Value error, ")
    else:
        variable = f"INVOICER_{name.upper()}"
    return f"invalid setting {variable}: {str(first['msg']).removeprefix('Value error, ')}"


def _build(env: Mapping[str, str]) -> Settings:
    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value not in (None, "") else None

    def given(**values: str | None) -> dict[str, str]:
        return {k: v for k, v in values.items() if v is not None}

    def provider(p: Provider, base_url: str, **defaults: object) -> ProviderSettings:
        up = p.upper()
        fields: dict[str, object] = {
            "provider": p,
            "base_url": get(f"{up}_BASE_URL") or base_url,
            **defaults,
            **given(
                api_key=get(f"{up}_API_KEY"),
                account=get(f"{up}_ACCOUNT"),
                rate_per_minute=get(f"{up}_RATE_PER_MINUTE"),
                failed_per_minute=get(f"{up}_FAILED_PER_MINUTE"),
                connect_timeout_s=get("INVOICER_CONNECT_TIMEOUT_S"),
                read_timeout_s=get("INVOICER_READ_TIMEOUT_S"),
            ),
        }
        try:
            return ProviderSettings.model_validate(fields)
        except ValidationError as exc:
            # Its errors name only the field: say which provider's variable.
            raise ConfigurationError(_invalid(exc, p)) from None

    retry = RetrySettings.model_validate(
        given(
            max_attempts=get("INVOICER_MAX_ATTEMPTS"),
            max_age_s=get("INVOICER_MAX_AGE_S"),
            backoff_base_s=get("INVOICER_BACKOFF_BASE_S"),
            backoff_cap_s=get("INVOICER_BACKOFF_CAP_S"),
        )
    )
    return Settings.model_validate(
        {
            "maast": provider(Provider.MAAST, "https://api-test.maast.com"),
            "stax": provider(
                Provider.STAX,
                "https://apiprod.fattlabs.com",
                rate_per_minute=100,
                failed_per_minute=8,
            ),
            "retry": retry,
            **given(
                redis_url=get("INVOICER_REDIS_URL"),
                redis_prefix=get("INVOICER_REDIS_PREFIX"),
                data_dir=get("INVOICER_DATA_DIR"),
                lease_s=get("INVOICER_LEASE_S"),
                landing_window_s=get("INVOICER_LANDING_WINDOW_S"),
                recovery_extra=get("INVOICER_RECOVERY_EXTRA"),
                poll_delay_s=get("INVOICER_POLL_DELAY_S"),
                concurrency=get("INVOICER_CONCURRENCY"),
                shutdown_wait_s=get("INVOICER_SHUTDOWN_WAIT_S"),
                sentry_dsn=get("SENTRY_DSN"),
                admin_token=get("INVOICER_ADMIN_TOKEN"),
                read_token=get("INVOICER_READ_TOKEN"),
                webhook_secret=get("INVOICER_WEBHOOK_SECRET"),
                log_format=get("INVOICER_LOG_FORMAT"),
                arq_provider=get("INVOICER_ARQ_PROVIDER"),
            ),
        }
    )
