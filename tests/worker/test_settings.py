"""Settings: environment over `.env`, defaults, errors that name the variable, no leaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.errors import ConfigurationError
from jobs.models import Provider
from worker.settings import load_settings, project_dir, read_env_file

MAAST_KEY = "maast-secret-9edec21a31c0"
STAX_KEY = "stax-secret-eyJ0eXAiOiJKV1Qi"
REDIS_PASSWORD = "redis-pass-42"


def test_defaults_from_an_empty_environment() -> None:
    settings = load_settings({}, env_file=None)
    assert settings.stax.rate_per_minute == 100
    assert settings.stax.failed_per_minute == 8
    assert settings.maast.rate_per_minute is None  # Maast publishes no limit
    assert settings.maast.failed_per_minute is None
    assert settings.maast.api_key is None and settings.stax.api_key is None
    assert settings.stax.base_url == "https://apiprod.fattlabs.com"
    assert settings.maast.base_url == "https://api-test.maast.com"
    assert settings.redis_url is None and settings.redis_prefix == "invoicer:"
    assert settings.retry.max_attempts == 8
    assert settings.landing_window_s == 300
    assert settings.provider(Provider.STAX) is settings.stax
    assert settings.provider(Provider.MAAST) is settings.maast


def test_values_from_a_dict_environment() -> None:
    settings = load_settings(
        {
            "MAAST_API_KEY": MAAST_KEY,
            "STAX_RATE_PER_MINUTE": "60",
            "STAX_FAILED_PER_MINUTE": "5",
            "STAX_ACCOUNT": "eu",
            "INVOICER_MAX_ATTEMPTS": "3",
            "INVOICER_READ_TIMEOUT_S": "2.5",
            "INVOICER_ARQ_PROVIDER": "stax",
            "UNRELATED": "ignored",
        },
        env_file=None,
    )
    assert settings.maast.require_key().get_secret_value() == MAAST_KEY
    assert (settings.stax.rate_per_minute, settings.stax.failed_per_minute) == (60, 5)
    assert settings.stax.account == "eu" and settings.maast.account == "default"
    assert settings.retry.max_attempts == 3
    assert settings.maast.read_timeout_s == settings.stax.read_timeout_s == 2.5
    assert settings.arq_provider is Provider.STAX


def test_empty_values_mean_unset() -> None:
    settings = load_settings({"MAAST_API_KEY": "", "STAX_RATE_PER_MINUTE": ""}, env_file=None)
    assert settings.maast.api_key is None
    assert settings.stax.rate_per_minute == 100


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# invoicer\n"
        "\n"
        f"MAAST_API_KEY={MAAST_KEY}\n"
        "export STAX_API_KEY='from-file'\n"
        'INVOICER_MAX_ATTEMPTS="4"\n'
        "not a setting\n",
        encoding="utf-8",
    )
    settings = load_settings({"STAX_API_KEY": STAX_KEY}, env_file=env_file)
    assert settings.maast.require_key().get_secret_value() == MAAST_KEY
    assert settings.stax.require_key().get_secret_value() == STAX_KEY
    assert settings.retry.max_attempts == 4


def test_missing_env_file_is_fine(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "absent") == {}
    assert load_settings({}, env_file=tmp_path / "absent").retry.max_attempts == 8


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STAX_RATE_PER_MINUTE", "fast"),
        ("STAX_RATE_PER_MINUTE", "-1"),
        ("MAAST_FAILED_PER_MINUTE", "0"),
        ("INVOICER_MAX_ATTEMPTS", "0"),
        ("INVOICER_LEASE_S", "soon"),
        ("INVOICER_CONCURRENCY", "1.5"),
        ("INVOICER_READ_TIMEOUT_S", "0"),
        ("INVOICER_ARQ_PROVIDER", "paypal"),
        ("INVOICER_LANDING_WINDOW_S", "0"),
        ("INVOICER_LANDING_WINDOW_S", "later"),
    ],
)
def test_invalid_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({variable: value}, env_file=None)
    assert variable in str(caught.value)


def test_a_landing_window_shorter_than_a_request_can_take_is_refused() -> None:
    # connect 5 s + read 30 s + the 5 s margin: 40 s at least
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"INVOICER_LANDING_WINDOW_S": "39"}, env_file=None)
    message = str(caught.value)
    assert message.startswith("invalid setting INVOICER_LANDING_WINDOW_S")
    assert "40 s" in message and "\n" not in message
    assert load_settings({"INVOICER_LANDING_WINDOW_S": "40"}, env_file=None).landing_window_s == 40
    shorter = {"INVOICER_READ_TIMEOUT_S": "1", "INVOICER_CONNECT_TIMEOUT_S": "1"}
    assert load_settings({**shorter, "INVOICER_LANDING_WINDOW_S": "7"}, env_file=None)


def test_invalid_value_in_env_file_names_the_variable(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("STAX_FAILED_PER_MINUTE=many\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="STAX_FAILED_PER_MINUTE"):
        load_settings({}, env_file=env_file)


@pytest.mark.parametrize(
    ("provider", "variable"),
    [(Provider.MAAST, "MAAST_API_KEY"), (Provider.STAX, "STAX_API_KEY")],
)
def test_require_key_names_the_variable(provider: Provider, variable: str) -> None:
    settings = load_settings({}, env_file=None)
    with pytest.raises(ConfigurationError, match=variable):
        settings.provider(provider).require_key()
    assert settings.provider(provider).key_variable == variable


def test_secrets_never_appear_in_repr_or_str() -> None:
    settings = load_settings(
        {
            "MAAST_API_KEY": MAAST_KEY,
            "STAX_API_KEY": STAX_KEY,
            "INVOICER_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
            "SENTRY_DSN": "https://sentrykey123@sentry.example/1",
            "INVOICER_ADMIN_TOKEN": "admin-token-abc-0123",
            "INVOICER_READ_TOKEN": "read-token-abc-0123",
            "INVOICER_WEBHOOK_SECRET": "hook-secret-abc-0123",
        },
        env_file=None,
    )
    shown = " ".join(
        [repr(settings), str(settings), repr(settings.maast), str(settings.stax), f"{settings}"]
    )
    for secret in (
        MAAST_KEY,
        STAX_KEY,
        REDIS_PASSWORD,
        "sentrykey123",
        "admin-token-abc-0123",
        "read-token-abc-0123",
        "hook-secret-abc-0123",
    ):
        assert secret not in shown
    assert "**********" in shown
    # and a configuration error never carries the key either
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"MAAST_API_KEY": MAAST_KEY, "MAAST_RATE_PER_MINUTE": "x"}, env_file=None)
    assert MAAST_KEY not in str(caught.value) and MAAST_KEY not in repr(caught.value)


def test_settings_are_frozen() -> None:
    settings = load_settings({}, env_file=None)
    with pytest.raises(ValueError, match="frozen"):
        settings.lease_s = 1.0  # type: ignore[misc]


CURLY = "sk-live-0123456789abcdef\u2019"
"""A key pasted with the closing curly quote of the mail it came in."""


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (CURLY, "not plain ASCII"),
        ("sk-live-0123 456789", "whitespace"),
        ("sk-live-0123456789\t", "whitespace"),
        ("sk-live-0123\n456789", "whitespace"),
        ("sk-live-0123\x07456789", "control character"),
        ('"sk-live-0123456789"x', "quote"),
    ],
    ids=["curly-quote", "space", "tab", "line-break", "control", "quote"],
)
@pytest.mark.parametrize("variable", ["MAAST_API_KEY", "STAX_API_KEY"])
def test_a_key_headers_cannot_carry_is_refused_naming_the_variable_never_the_value(
    variable: str, value: str, why: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({variable: value}, env_file=None)
    message = str(caught.value)
    assert message.startswith(f"invalid setting {variable}: ") and why in message
    for shown in (message, repr(caught.value)):
        assert value not in shown and "0123" not in shown


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("localhost:6379", "must start with redis://"),
        ("http://:pw-9f3@localhost:6379/0", "must start with redis://"),
        ("redis://:pw-9f3@localhost:port/0", "port is not a number"),
        ("redis://:pw-9f3@localhost:6379/seven", "database after the last '/' must be a number"),
        ("redis://:pw-9f3@localhost:6379/\u0663", "database after the last '/' must be a number"),
        ("redis://:pw-9f3@:6379/0", "names no host"),
        ("unix://", "needs the socket's path"),
    ],
)
def test_malformed_redis_url_is_refused_without_echoing_it(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"INVOICER_REDIS_URL": url}, env_file=None)
    assert "invalid setting INVOICER_REDIS_URL" in str(caught.value)
    assert problem in str(caught.value)
    assert "pw-9f3" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["api.maast.com", "ftp://api.maast.com", "http://", "http://host:99999", "http://ex ample.com"],
)
def test_a_malformed_base_url_is_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid setting MAAST_BASE_URL: "):
        load_settings({"MAAST_BASE_URL": url}, env_file=None)


@pytest.mark.parametrize(
    "url",
    ["redis://localhost", "redis://:p@h:6380/2", "rediss://u:p@h/0", "unix:///run/redis.sock"],
)
def test_usable_redis_urls_are_accepted(url: str) -> None:
    settings = load_settings({"INVOICER_REDIS_URL": url}, env_file=None)
    assert settings.redis_url is not None and settings.redis_url.get_secret_value() == url


def test_project_dir_is_the_nearest_holding_env_or_data_dir(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    deep = root / "a" / "b"
    deep.mkdir(parents=True)
    (root / ".invoicer").mkdir()
    assert project_dir(deep) == root
    (root / "a" / ".env").write_text("", encoding="utf-8")
    assert project_dir(deep) == root / "a"


def test_default_data_dir_and_env_file_are_the_projects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("STAX_ACCOUNT=eu\n", encoding="utf-8")
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)

    settings = load_settings({})

    assert settings.stax.account == "eu"
    assert settings.data_dir == tmp_path / ".invoicer"
