"""Settings: defaults, parsing, one clear error naming the variable, secrets never shown."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from service.errors import ConfigError
from service.settings import PRODUCTION_API_URL, Secret, Settings, load_settings, startup_warnings

WEBHOOK_SECRET = "webhook-secret-0123456789"


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
    assert s.webhook_max_body == 65536
    assert s.pause_max == 3600.0


def test_values_are_parsed() -> None:
    """Every kind of value is read and typed."""
    s = load_settings(
        {
            "WISEFLOW_API_URL": "http://127.0.0.1:9000/v1/",
            "WISEFLOW_CLIENT_ID": "id",
            "WISEFLOW_CLIENT_SECRET": "sec",
            "WISEFLOW_WEBHOOK_SECRET": "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb",
            "WISEFLOW_WEBHOOK_SCHEME": "Standard",
            "SYNC_HTTP_PORT": "9090",
            "SYNC_POLL_INTERVAL": "60.5",
            "LOG_LEVEL": "debug",
            "SYNC_WEBHOOK_MAX_BODY": "4096",
            "SYNC_PAUSE_MAX": "900",
        }
    )
    assert s.api_url == "http://127.0.0.1:9000/v1"
    assert s.uses_oauth
    assert [x.reveal() for x in s.webhook_secrets] == ["a" * 16, "b" * 16]
    assert s.webhook_scheme == "standard"
    assert s.http_port == 9090
    assert s.poll_interval == 60.5
    assert s.log_level == "DEBUG"
    assert s.webhook_max_body == 4096
    assert s.pause_max == 900.0


def test_readiness_and_retention_defaults() -> None:
    """64 MiB of free space for readiness, 90 days of retention; 0 turns either off."""
    s = load_settings({})
    assert (s.min_free_bytes, s.retain_days) == (64 * 1024 * 1024, 90)
    off = load_settings({"SYNC_MIN_FREE_BYTES": "0", "SYNC_RETAIN_DAYS": "0"})
    assert (off.min_free_bytes, off.retain_days) == (0, 0)


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
        ({"SYNC_WEBHOOK_MAX_BODY": "100"}, "SYNC_WEBHOOK_MAX_BODY"),
        ({"SYNC_PAUSE_MAX": "0"}, "SYNC_PAUSE_MAX"),
        ({"OTEL_TRACES_SAMPLER": "bogus"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_TRACES_SAMPLER_ARG": "abc"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"SYNC_MIN_FREE_BYTES": "-1"}, "SYNC_MIN_FREE_BYTES"),
        ({"SYNC_MIN_FREE_BYTES": "64MiB"}, "SYNC_MIN_FREE_BYTES"),
        ({"SYNC_RETAIN_DAYS": "1.5"}, "SYNC_RETAIN_DAYS"),
        ({"SYNC_RETAIN_DAYS": "-3"}, "SYNC_RETAIN_DAYS"),
        ({"WISEFLOW_API_URL": "https://[::1"}, "WISEFLOW_API_URL"),
        ({"WISEFLOW_API_URL": "https://europe-api.wiseflow.net:99999/v1"}, "WISEFLOW_API_URL"),
        ({"SYNC_SINK_URL": "https://[::1/grades"}, "SYNC_SINK_URL"),
        ({"SYNC_SINK_URL": "https://sis.example.org:99999/grades"}, "SYNC_SINK_URL"),
        ({"SYNC_PUBLIC_WEBHOOK_URL": "https://[::1"}, "SYNC_PUBLIC_WEBHOOK_URL"),
        ({"SYNC_PUBLIC_WEBHOOK_URL": "https://sync.example.org:99999/w"}, "SYNC_PUBLIC_WEBHOOK_URL"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:99999"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"SYNC_SINK_ALLOW_UNAUTHENTICATED": "maybe"}, "SYNC_SINK_ALLOW_UNAUTHENTICATED"),
        ({"WISEFLOW_CLIENT_NAME": "sync\x1bname"}, "WISEFLOW_CLIENT_NAME"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], variable: str) -> None:
    """A malformed or missing value raises ConfigError naming the variable, on one line."""
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(variable + ":")
    assert "\n" not in str(info.value)


def test_the_sink_url_is_kept_exactly_as_given() -> None:
    """SYNC_SINK_URL keeps its trailing slash (redirects are never followed, so it must be the real URL);
    the API base URL loses it, as the client appends paths to it."""
    s = load_settings({"SYNC_SINK_URL": "https://sis.example.org/grades/", "WISEFLOW_API_URL": "https://w/v1/"})
    assert (s.sink_url, s.api_url) == ("https://sis.example.org/grades/", "https://w/v1")


def test_secret_values_never_appear_in_repr_or_errors() -> None:
    """Secrets are masked in repr and str, and not echoed by errors."""
    s = load_settings(
        {
            "WISEFLOW_CLIENT_ID": "id",
            "WISEFLOW_CLIENT_SECRET": "topsecret-1",
            "WISEFLOW_API_KEY": "topsecret-2",
            "WISEFLOW_WEBHOOK_SECRET": "topsecret-3-webhook-key",
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
    """No webhook secret, a static key, no sink, no sink credential: one warning each; none when safe."""
    risky = load_settings({"WISEFLOW_API_KEY": "k"})
    warnings = startup_warnings(risky)
    assert [w.split(" ", 1)[0] for w in warnings] == [
        "WISEFLOW_WEBHOOK_SECRET",
        "WISEFLOW_API_KEY",
        "SYNC_SINK_URL",
    ]
    safe = load_settings(
        {
            "WISEFLOW_CLIENT_ID": "i",
            "WISEFLOW_CLIENT_SECRET": "s",
            "WISEFLOW_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SYNC_SINK_URL": "https://sis.example.org/grades",
            "SYNC_SINK_TOKEN": "t",
        }
    )
    assert startup_warnings(safe) == []
    unauthenticated = load_settings(
        {"SYNC_SINK_URL": "https://sis.example.org/grades", "SYNC_SINK_ALLOW_UNAUTHENTICATED": "true"}
    )
    assert "SYNC_SINK_TOKEN" in startup_warnings(unauthenticated)[-1]
    loopback = load_settings(
        {
            "WISEFLOW_API_URL": "http://127.0.0.1:8081/v1",
            "WISEFLOW_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SYNC_SINK_URL": "http://127.0.0.1:9/sis",
        }
    )
    assert startup_warnings(loopback) == []


@pytest.mark.parametrize("variable", ["WISEFLOW_API_URL", "SYNC_SINK_URL"])
@pytest.mark.parametrize(
    "value",
    ["http://wiseflow.example.org/v1", "http://10.0.0.1/v1", "http://[::2]/v1", "http://localhost.evil/x"],
)
def test_plain_http_off_loopback_stops_startup(variable: str, value: str) -> None:
    """WISEflow and the SIS carry tokens and grades: plain http is refused unless the host is loopback."""
    with pytest.raises(ConfigError) as info:
        load_settings({variable: value})
    assert info.value.variable == variable
    assert "https" in str(info.value)


@pytest.mark.parametrize("variable", ["WISEFLOW_API_URL", "SYNC_SINK_URL"])
@pytest.mark.parametrize(
    "value", ["http://127.0.0.1:9/v1", "http://127.1.2.3/v1", "http://[::1]:9/v1", "http://localhost/v1"]
)
def test_plain_http_on_loopback_is_accepted(variable: str, value: str) -> None:
    """Loopback (127.0.0.0/8, ::1, localhost) may use plain http: the simulator and local tests."""
    settings = load_settings({variable: value})
    assert value == (settings.api_url if variable == "WISEFLOW_API_URL" else settings.sink_url)


SECRET_VARIABLES = [
    ("WISEFLOW_CLIENT_SECRET", "client_secret"),
    ("WISEFLOW_API_KEY", "api_key"),
    ("SYNC_SINK_TOKEN", "sink_token"),
    ("SYNC_SINK_SECRET", "sink_secret"),
]


@pytest.mark.parametrize(("variable", "attribute"), SECRET_VARIABLES)
def test_every_secret_reads_from_its_file(tmp_path: Path, variable: str, attribute: str) -> None:
    """NAME_FILE names a file whose content, less all trailing whitespace, is the secret."""
    path = tmp_path / "secret"
    path.write_text(" from-file \r\n\n\t ", encoding="utf-8")
    env = {f"{variable}_FILE": str(path), "WISEFLOW_CLIENT_ID": "id", "WISEFLOW_CLIENT_SECRET": "s"}
    env.pop(variable, None)
    value = getattr(load_settings(env), attribute)
    assert value.reveal() == " from-file"


def test_webhook_secrets_read_from_a_file_keep_rotation(tmp_path: Path) -> None:
    """WISEFLOW_WEBHOOK_SECRET_FILE holds the same comma-separated list as the variable."""
    path = tmp_path / "webhook"
    path.write_text("old-webhook-secret-0,new-webhook-secret-1\n", encoding="utf-8")
    settings = load_settings({"WISEFLOW_WEBHOOK_SECRET_FILE": str(path)})
    assert [s.reveal() for s in settings.webhook_secrets] == ["old-webhook-secret-0", "new-webhook-secret-1"]


def test_a_secret_and_its_file_together_name_both(tmp_path: Path) -> None:
    """Both NAME and NAME_FILE set is ambiguous: startup stops naming both."""
    path = tmp_path / "key"
    path.write_text("k2", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings({"WISEFLOW_API_KEY": "k1", "WISEFLOW_API_KEY_FILE": str(path)})
    assert "WISEFLOW_API_KEY:" in str(info.value)
    assert "WISEFLOW_API_KEY_FILE" in str(info.value)
    assert "k1" not in str(info.value)
    assert "k2" not in str(info.value)


def test_an_unreadable_or_empty_secret_file_names_the_variable_not_the_content(tmp_path: Path) -> None:
    """A missing, undecodable or empty file: one line naming NAME_FILE, never the file's bytes."""
    missing = tmp_path / "absent"
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfetopsecret")
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    for path in (missing, binary, empty, tmp_path):
        with pytest.raises(ConfigError) as info:
            load_settings({"WISEFLOW_API_KEY_FILE": str(path)})
        assert info.value.variable == "WISEFLOW_API_KEY_FILE"
        assert "topsecret" not in str(info.value)
        assert "\n" not in str(info.value)


def configuration_page(section: str) -> str:
    """One section of docs/configuration.md, from its heading to the next."""
    page = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    start = page.index(f"## {section}")
    end = page.find("\n## ", start + 1)
    return page[start : end if end != -1 else len(page)]


def test_the_configuration_page_documents_exactly_the_settings() -> None:
    """docs/configuration.md's table names every variable `load_settings` reads, and no other."""
    rows = [line for line in configuration_page("Every setting").splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}
    assert documented == {f.metadata["env"] for f in fields(Settings)}


def test_the_configuration_page_names_every_secret_read_from_a_file() -> None:
    """The page's rule for secrets names exactly the settings `load_settings` also reads from NAME_FILE."""
    rule = re.search(
        r"Every secret \(([^)]*)\) can instead be read from a file", configuration_page("The rules")
    )
    assert rule is not None
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", rule.group(1)))
    assert named == {f.metadata["env"] for f in fields(Settings) if f.metadata["from_file"]}


@pytest.mark.parametrize("variable", ["SYNC_SINK_TOKEN", "WISEFLOW_API_KEY"])
def test_a_secret_file_with_two_trailing_newlines_holds_the_bare_token(tmp_path: Path, variable: str) -> None:
    """`token\\n\\n` (kubectl from a heredoc) is the token: no newline may reach an HTTP header."""
    path = tmp_path / "secret"
    path.write_text("token\n\n", encoding="utf-8")
    settings = load_settings({f"{variable}_FILE": str(path)})
    value = settings.sink_token if variable == "SYNC_SINK_TOKEN" else settings.api_key
    assert value is not None
    assert value.reveal() == "token"


@pytest.mark.parametrize("variable", ["SYNC_SINK_TOKEN", "WISEFLOW_API_KEY", "WISEFLOW_WEBHOOK_SECRET"])
@pytest.mark.parametrize("content", ["tok\nen-topsecret\n", "tok\ten-topsecret", "\x00topsecret-0123456789"])
def test_control_characters_in_a_secret_file_stop_startup_naming_the_file_variable(
    tmp_path: Path, variable: str, content: str
) -> None:
    """A control character left after stripping: one line naming NAME_FILE, never the value."""
    path = tmp_path / "secret"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings({f"{variable}_FILE": str(path)})
    assert info.value.variable == f"{variable}_FILE"
    assert "control character" in str(info.value)
    assert "topsecret" not in str(info.value)
    assert "\n" not in str(info.value)


def test_control_characters_in_a_secret_variable_stop_startup_naming_it() -> None:
    """The same check for the variable itself (inner line breaks survive the strip)."""
    with pytest.raises(ConfigError) as info:
        load_settings({"SYNC_SINK_TOKEN": "tok\r\nen-topsecret"})
    assert info.value.variable == "SYNC_SINK_TOKEN"
    assert "topsecret" not in str(info.value)


@pytest.mark.parametrize(
    ("scheme", "secret", "problem"),
    [
        ("standard", "whsec_", "empty key"),
        ("standard", "whsec_c2hvcnQ=", "too short"),  # base64 of "short": 5 bytes
        ("standard", "whsec_!!not-base64", "base64"),
        ("standard", "short-utf8", "too short"),
        ("wiseflow", "fifteen-bytes-x", "too short"),
        ("wiseflow", "a-good-webhook-secret,old", "too short"),
    ],
)
def test_webhook_secrets_shorter_than_a_key_stop_startup(scheme: str, secret: str, problem: str) -> None:
    """An empty `whsec_` key, an undecodable one, or fewer than 16 key bytes: one line naming the variable."""
    with pytest.raises(ConfigError) as info:
        load_settings({"WISEFLOW_WEBHOOK_SCHEME": scheme, "WISEFLOW_WEBHOOK_SECRET": secret})
    assert info.value.variable == "WISEFLOW_WEBHOOK_SECRET"
    assert problem in info.value.problem
    assert "not-base64" not in str(info.value)


def test_webhook_keys_of_sixteen_bytes_are_accepted(tmp_path: Path) -> None:
    """16 UTF-8 bytes, or 16 decoded bytes of a whsec_ key, are enough; the file variant names itself."""
    load_settings({"WISEFLOW_WEBHOOK_SECRET": "sixteen-bytes-ok"})
    load_settings(
        {"WISEFLOW_WEBHOOK_SCHEME": "standard", "WISEFLOW_WEBHOOK_SECRET": "whsec_" + "A" * 22 + "=="}
    )
    path = tmp_path / "webhook"
    path.write_text("sixteen-bytes-ok,short\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings({"WISEFLOW_WEBHOOK_SECRET_FILE": str(path)})
    assert info.value.variable == "WISEFLOW_WEBHOOK_SECRET_FILE"


def test_a_remote_sink_without_credentials_is_refused_unless_opted_out() -> None:
    """Grades to a non-loopback SIS need a token or a secret, or SYNC_SINK_ALLOW_UNAUTHENTICATED=true."""
    remote = {"SYNC_SINK_URL": "https://sis.example.org/grades"}
    with pytest.raises(ConfigError) as info:
        load_settings(remote).require_sink_authentication()
    assert "SYNC_SINK_TOKEN" in str(info.value)
    assert "SYNC_SINK_SECRET" in str(info.value)
    assert "SYNC_SINK_ALLOW_UNAUTHENTICATED" in str(info.value)
    load_settings({**remote, "SYNC_SINK_ALLOW_UNAUTHENTICATED": "true"}).require_sink_authentication()
    load_settings({**remote, "SYNC_SINK_TOKEN": "t"}).require_sink_authentication()
    load_settings({**remote, "SYNC_SINK_SECRET": "s"}).require_sink_authentication()
    load_settings({"SYNC_SINK_URL": "http://127.0.0.1:9/sis"}).require_sink_authentication()
    load_settings({}).require_sink_authentication()
    with pytest.raises(ConfigError):
        load_settings({**remote, "SYNC_SINK_ALLOW_UNAUTHENTICATED": "false"}).require_sink_authentication()
