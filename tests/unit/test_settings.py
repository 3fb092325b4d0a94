"""Settings: defaults, parsing, one clear error naming the variable, secrets never shown."""

from __future__ import annotations

import pytest

from service.errors import ConfigError
from service.settings import PRODUCTION_API_URL, Secret, load_settings, startup_warnings


def test_defaults_from_an_empty_environment() -> None:
    """An empty environment gives the documented defaults."""
    s = load_settings({})
    assert s.api_url == PRODUCTION_API_URL
    assert s.webhook_scheme == "wiseflow"
    assert s.webhook_signature_header == "X-Wiseflow-Signature"
    assert s.webhook_tolerance == 300.0
    assert s.http_port == 8080
    assert s.max_wait == 300.0
    assert s.rate_per_second <= 200
    assert s.rate_per_minute <= 5000
    assert s.sink_url is None


def test_values_are_parsed() -> None:
    """Every kind of value is read and typed."""
    s = load_settings(
        {
            "WISEFLOW_API_URL": "http://127.0.0.1:9000/v1/",
            "WISEFLOW_CLIENT_ID": "id",
            "WISEFLOW_CLIENT_SECRET": "sec",
            "WISEFLOW_WEBHOOK_SECRET": "a, b",
            "WISEFLOW_WEBHOOK_SCHEME": "Standard",
            "SYNC_HTTP_PORT": "9090",
            "SYNC_POLL_INTERVAL": "60.5",
            "LOG_LEVEL": "debug",
        }
    )
    assert s.api_url == "http://127.0.0.1:9000/v1"
    assert s.uses_oauth
    assert [x.reveal() for x in s.webhook_secrets] == ["a", "b"]
    assert s.webhook_scheme == "standard"
    assert s.http_port == 9090
    assert s.poll_interval == 60.5
    assert s.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SYNC_HTTP_PORT": "eighty"}, "SYNC_HTTP_PORT"),
        ({"SYNC_HTTP_PORT": "70000"}, "SYNC_HTTP_PORT"),
        ({"SYNC_POLL_INTERVAL": "nan"}, "SYNC_POLL_INTERVAL"),
        ({"SYNC_RATE_PER_SECOND": "500"}, "SYNC_RATE_PER_SECOND"),
        ({"SYNC_RATE_PER_MINUTE": "0"}, "SYNC_RATE_PER_MINUTE"),
        ({"WISEFLOW_API_URL": "ftp://x"}, "WISEFLOW_API_URL"),
        ({"SYNC_SINK_URL": "http://user:pw@sis/grades"}, "SYNC_SINK_URL"),
        ({"WISEFLOW_WEBHOOK_SCHEME": "github"}, "WISEFLOW_WEBHOOK_SCHEME"),
        ({"WISEFLOW_WEBHOOK_SIGNATURE_HEADER": "X Sig"}, "WISEFLOW_WEBHOOK_SIGNATURE_HEADER"),
        ({"WISEFLOW_WEBHOOK_SECRET": "a,,b"}, "WISEFLOW_WEBHOOK_SECRET"),
        ({"WISEFLOW_CLIENT_ID": "id"}, "WISEFLOW_CLIENT_SECRET"),
        ({"WISEFLOW_CLIENT_SECRET": "s3cr3t"}, "WISEFLOW_CLIENT_ID"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"OTEL_TRACES_SAMPLER": "bogus"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_TRACES_SAMPLER_ARG": "abc"}, "OTEL_TRACES_SAMPLER_ARG"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], variable: str) -> None:
    """A malformed or missing value raises ConfigError naming the variable, on one line."""
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(variable + ":")
    assert "\n" not in str(info.value)


def test_secret_values_never_appear_in_repr_or_errors() -> None:
    """Secrets are masked in repr and str, and not echoed by errors."""
    s = load_settings(
        {
            "WISEFLOW_CLIENT_ID": "id",
            "WISEFLOW_CLIENT_SECRET": "topsecret-1",
            "WISEFLOW_API_KEY": "topsecret-2",
            "WISEFLOW_WEBHOOK_SECRET": "topsecret-3",
        }
    )
    assert "topsecret" not in repr(s)
    assert str(Secret("topsecret")) == "***"
    with pytest.raises(ConfigError) as info:
        load_settings({"WISEFLOW_API_URL": "not-a-url-topsecret"})
    assert "topsecret" not in str(info.value)


def test_credentials_are_required_only_when_asked() -> None:
    """Commands that need WISEflow call require_api_credentials; it names the variable."""
    with pytest.raises(ConfigError) as info:
        load_settings({}).require_api_credentials()
    assert info.value.variable == "WISEFLOW_CLIENT_ID"
    load_settings({"WISEFLOW_API_KEY": "k"}).require_api_credentials()


def test_startup_warnings_name_risky_but_valid_settings() -> None:
    """No webhook secret, plain http off loopback, a static key, no sink: one warning each; none when safe."""
    risky = load_settings({"WISEFLOW_API_URL": "http://wiseflow.example.org/v1", "WISEFLOW_API_KEY": "k"})
    warnings = startup_warnings(risky)
    assert [w.split(" ", 1)[0] for w in warnings] == [
        "WISEFLOW_WEBHOOK_SECRET",
        "WISEFLOW_API_URL",
        "WISEFLOW_API_KEY",
        "SYNC_SINK_URL",
    ]
    safe = load_settings(
        {
            "WISEFLOW_CLIENT_ID": "i",
            "WISEFLOW_CLIENT_SECRET": "s",
            "WISEFLOW_WEBHOOK_SECRET": "w",
            "SYNC_SINK_URL": "https://sis.example.org/grades",
        }
    )
    assert startup_warnings(safe) == []
    loopback = load_settings(
        {
            "WISEFLOW_API_URL": "http://127.0.0.1:8081/v1",
            "WISEFLOW_WEBHOOK_SECRET": "w",
            "SYNC_SINK_URL": "http://127.0.0.1:9/sis",
        }
    )
    assert startup_warnings(loopback) == []
