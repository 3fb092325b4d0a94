"""One frozen settings object, parsed once from a mapping (the environment) by `load_settings`.

Each field of `Settings` is declared once with `setting(VARIABLE, default, parser)`: its environment
variable, its default and how a value is read. Adding a setting is that one line. A missing or malformed
value raises `ConfigError` naming the variable and never echoing its value. Secrets are wrapped in
`Secret`, whose `repr` and `str` are masked, so a settings object can be logged; every secret can also be
read from the file named by `VARIABLE_FILE` (Kubernetes secret volumes; see `settings_sources`).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, TypeVar, cast
from urllib.parse import SplitResult, urlsplit

from service.core.ports import WEBHOOK_EVENTS
from service.core.signatures import key_problem
from service.errors import ConfigError
from service.settings_sources import setting_text

PRODUCTION_API_URL: Final = "https://europe-api.wiseflow.net/v1"
STAGING_API_URL: Final = "https://europe-stage-api.wiseflow.net/v1"
WEBHOOK_SCHEMES: Final = ("wiseflow", "standard")
TRUE_WORDS: Final = ("true", "yes", "on", "1")
FALSE_WORDS: Final = ("false", "no", "off", "0")
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The OTEL_TRACES_SAMPLER values: the standard ones (OpenTelemetry SDK environment specification) and the
# default, `webhook_ratio` (every span, except accepted webhook receipts: OTEL_TRACES_SAMPLER_ARG of those).
SAMPLER_NAMES: Final = (
    "webhook_ratio",
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
# WISEflow's documented ceilings per credential set; our budgets must stay at or under them.
WISEFLOW_MAX_PER_SECOND: Final = 200
WISEFLOW_MAX_PER_MINUTE: Final = 5000
DAY: Final = 86400.0
# Bytes of one webhook body: WISEflow's events are a few hundred bytes, and what an unverified sender can
# make us hold is this times the receiver's bound on concurrent reads.
WEBHOOK_MAX_BODY: Final = 64 * 1024

T = TypeVar("T")
# A parser gets the variable's name (for its error) and the non-blank, stripped raw value.
Parser = Callable[[str, str], T]


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret value that never shows itself in `repr`, `str`, logs or tracebacks."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        """The raw value, for the one place that must send or use it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


def is_loopback(host: str | None) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: the only hosts plain http is accepted for."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- parsers: each takes (variable, raw) and returns the typed value or raises ConfigError ---


def text(_: str, raw: str) -> str:
    """Any non-blank text."""
    return raw


def secret(_: str, raw: str) -> Secret:
    """One secret value."""
    return Secret(raw)


def secrets(name: str, raw: str) -> tuple[Secret, ...]:
    """Comma-separated secrets, so one can be rotated without losing events."""
    parts = [p.strip() for p in raw.split(",")]
    if any(p == "" for p in parts):
        raise ConfigError(name, "malformed: an empty entry in the comma-separated list")
    return tuple(Secret(p) for p in parts)


def number(kind: Callable[[str], T], *, low: float, high: float) -> Parser[T]:
    """A whole number (`kind=int`) or a number (`kind=float`) within [low, high]."""

    def parse(name: str, raw: str) -> T:
        try:
            value = kind(raw)
        except ValueError:
            label = "a whole number" if kind is int else "a number"
            raise ConfigError(name, f"malformed: expected {label}") from None
        as_float = float(cast(float, value))
        if math.isnan(as_float) or not low <= as_float <= high:
            raise ConfigError(name, f"out of range: expected {low:g} to {high:g}")
        return value

    return parse


def choice(allowed: tuple[str, ...], *, upper: bool = False) -> Parser[str]:
    """One of `allowed`, case-insensitive."""

    def parse(name: str, raw: str) -> str:
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise ConfigError(name, f"malformed: expected one of {', '.join(allowed)}")
        return value

    return parse


def header(name: str, raw: str) -> str:
    """An HTTP header name."""
    if not all(c.isalnum() or c in "-_" for c in raw):
        raise ConfigError(name, "malformed: not an HTTP header name")
    return raw


def flag(name: str, raw: str) -> bool:
    """true/false (also yes/no, on/off, 1/0), case-insensitive."""
    value = raw.lower()
    if value not in TRUE_WORDS + FALSE_WORDS:
        raise ConfigError(name, "malformed: expected true or false")
    return value in TRUE_WORDS


def split_url(name: str, raw: str) -> SplitResult:
    """`raw` split into its parts, with a host and a valid port; `ConfigError` naming `name` otherwise.

    urlsplit raises for an unclosed IPv6 bracket (`https://[::1`) and `.port` for a port over 65535: both
    would otherwise pass here and crash at the first request.
    """
    try:
        parts = urlsplit(raw)
        _ = parts.port
    except ValueError:
        raise ConfigError(name, "malformed: expected an http(s) URL with a valid host and port") from None
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.hostname:
        raise ConfigError(name, "malformed: expected an http(s) URL")
    return parts


def url(*, https: bool, strip_slash: bool = True) -> Parser[str]:
    """An http(s) URL without credentials; with `https`, plain http only on loopback."""

    def parse(name: str, raw: str) -> str:
        parts = split_url(name, raw)
        if parts.username or parts.password:
            raise ConfigError(name, "malformed: credentials do not belong in the URL")
        if https and parts.scheme != "https" and not is_loopback(parts.hostname):
            raise ConfigError(name, "insecure: must be https (plain http only on loopback)")
        return raw.rstrip("/") if strip_slash else raw

    return parse


def parse_webhook_url(name: str, raw: str | None) -> str | None:
    """The public URL WISEflow delivers webhooks to: https (http only on loopback), no credentials."""
    if raw is None or raw.strip() == "":
        return None
    parts = split_url(name, raw.strip())
    # WISEflow delivers to https only; plain http is allowed for loopback (the simulator, local tests).
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(name, "malformed: WISEflow delivers to https URLs only")
    if parts.username or parts.password:
        raise ConfigError(name, "malformed: credentials do not belong in the URL")
    return raw.strip()


def parse_webhook_events(name: str, raw: str | None) -> tuple[str, ...]:
    """The events to subscribe to: a comma-separated list, or every event WISEflow sends."""
    if raw is None or raw.strip() == "":
        return WEBHOOK_EVENTS
    events = tuple(e.strip().upper() for e in raw.split(",") if e.strip())
    if not events or any(e not in WEBHOOK_EVENTS for e in events):
        raise ConfigError(name, f"malformed: expected events among {', '.join(WEBHOOK_EVENTS)}")
    return events


def setting(env: str, default: T, parse: Parser[T], *, from_file: bool = False) -> T:
    """Declare a field of `Settings`: its variable, its default (written only here) and its parser.

    `from_file`: a secret, also readable from the file named by `{env}_FILE`.
    """
    metadata = {"env": env, "parse": parse, "from_file": from_file}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of wiseflow-sync, each with its variable, default and parser (one line each)."""

    api_url: str = setting("WISEFLOW_API_URL", PRODUCTION_API_URL, url(https=True))
    client_id: str | None = setting("WISEFLOW_CLIENT_ID", None, text)
    client_secret: Secret | None = setting("WISEFLOW_CLIENT_SECRET", None, secret, from_file=True)
    api_key: Secret | None = setting("WISEFLOW_API_KEY", None, secret, from_file=True)
    client_name: str = setting("WISEFLOW_CLIENT_NAME", "wiseflow-sync", text)
    webhook_secrets: tuple[Secret, ...] = setting("WISEFLOW_WEBHOOK_SECRET", (), secrets, from_file=True)
    webhook_scheme: str = setting("WISEFLOW_WEBHOOK_SCHEME", "wiseflow", choice(WEBHOOK_SCHEMES))
    webhook_signature_header: str = setting("WISEFLOW_WEBHOOK_SIGNATURE_HEADER", "X-Wiseflow-Signature", header)
    webhook_tolerance: float = setting("WISEFLOW_WEBHOOK_TOLERANCE", 300.0, number(float, low=1, high=DAY))
    webhook_max_attempts: int = setting("SYNC_WEBHOOK_MAX_ATTEMPTS", 8, number(int, low=1, high=1000))
    webhook_max_body: int = setting(
        "SYNC_WEBHOOK_MAX_BODY", WEBHOOK_MAX_BODY, number(int, low=1024, high=16 * 1024 * 1024)
    )
    database: str = setting("SYNC_DATABASE", "wiseflow-sync.sqlite3", text)
    # A container listens on all interfaces.
    http_host: str = setting("SYNC_HTTP_HOST", "0.0.0.0", text)  # noqa: S104
    http_port: int = setting("SYNC_HTTP_PORT", 8080, number(int, low=1, high=65535))
    poll_interval: float = setting("SYNC_POLL_INTERVAL", 900.0, number(float, low=1, high=7 * DAY))
    reconcile_interval: float = setting("SYNC_RECONCILE_INTERVAL", DAY, number(float, low=0, high=365 * DAY))
    rate_per_second: int = setting("SYNC_RATE_PER_SECOND", 20, number(int, low=1, high=WISEFLOW_MAX_PER_SECOND))
    rate_per_minute: int = setting(
        "SYNC_RATE_PER_MINUTE", 1000, number(int, low=1, high=WISEFLOW_MAX_PER_MINUTE)
    )
    max_wait: float = setting("SYNC_MAX_WAIT", 300.0, number(float, low=0, high=DAY))
    # Exactly as given (a trailing slash too): redirects are never followed, so the URL must be the one.
    sink_url: str | None = setting("SYNC_SINK_URL", None, url(https=True, strip_slash=False))
    sink_token: Secret | None = setting("SYNC_SINK_TOKEN", None, secret, from_file=True)
    sink_secret: Secret | None = setting("SYNC_SINK_SECRET", None, secret, from_file=True)
    # Only for an SIS that authenticates us some other way (mutual TLS at a proxy, a private network).
    sink_allow_unauthenticated: bool = setting("SYNC_SINK_ALLOW_UNAUTHENTICATED", False, flag)
    concurrency: int = setting("SYNC_CONCURRENCY", 4, number(int, low=1, high=64))
    connect_timeout: float = setting("SYNC_CONNECT_TIMEOUT", 5.0, number(float, low=0.1, high=300))
    read_timeout: float = setting("SYNC_READ_TIMEOUT", 30.0, number(float, low=0.1, high=600))
    retry_attempts: int = setting("SYNC_RETRY_ATTEMPTS", 5, number(int, low=1, high=20))
    retry_base: float = setting("SYNC_RETRY_BASE", 0.5, number(float, low=0.01, high=60))
    retry_cap: float = setting("SYNC_RETRY_CAP", 30.0, number(float, low=0.1, high=3600))
    retry_after_max: float = setting("SYNC_RETRY_AFTER_MAX", 60.0, number(float, low=0, high=DAY))
    pause_max: float = setting("SYNC_PAUSE_MAX", 3600.0, number(float, low=1, high=DAY))
    call_deadline: float = setting("SYNC_CALL_DEADLINE", 120.0, number(float, low=1, high=DAY))
    log_level: str = setting("LOG_LEVEL", "INFO", choice(LOG_LEVELS, upper=True))
    otel_service_name: str = setting("OTEL_SERVICE_NAME", "wiseflow-sync", text)
    # The collector usually runs beside the pod, on plain http inside the cluster.
    otel_endpoint: str | None = setting("OTEL_EXPORTER_OTLP_ENDPOINT", None, url(https=False))
    otel_sampler: str = setting("OTEL_TRACES_SAMPLER", "webhook_ratio", choice(SAMPLER_NAMES))
    otel_sampler_arg: float | None = setting("OTEL_TRACES_SAMPLER_ARG", None, number(float, low=0, high=1))
    public_webhook_url: str | None = setting("SYNC_PUBLIC_WEBHOOK_URL", None, parse_webhook_url)
    webhook_events: tuple[str, ...] = setting("SYNC_WEBHOOK_EVENTS", WEBHOOK_EVENTS, parse_webhook_events)
    # Readiness: below this many free bytes on the database's volume the pod takes no webhooks (0: no check).
    # 64 MiB: room for a burst of webhooks and a sync run's commits while an operator reacts.
    min_free_bytes: int = setting("SYNC_MIN_FREE_BYTES", 64 * 1024 * 1024, number(int, low=0, high=2**50))
    # Days kept of processed webhooks, delivered grades' payloads, the request journal and run history
    # (0: keep all). 90: a semester's exam period and its appeals, with certify's figures kept in aggregates.
    retain_days: int = setting("SYNC_RETAIN_DAYS", 90, number(int, low=0, high=36500))

    @property
    def uses_oauth(self) -> bool:
        """OAuth 2.0 client credentials are the default; the API key only when it is all we have."""
        return self.client_id is not None

    def require_api_credentials(self) -> None:
        """Raise `ConfigError` unless OAuth client credentials or an API key are configured."""
        if self.client_id is None and self.api_key is None:
            raise ConfigError(
                "WISEFLOW_CLIENT_ID",
                "missing: set WISEFLOW_CLIENT_ID and WISEFLOW_CLIENT_SECRET (or WISEFLOW_API_KEY)",
            )

    @property
    def sink_unauthenticated(self) -> bool:
        """True when grades would go to a non-loopback SIS with neither a token nor a signature."""
        return (
            self.sink_url is not None
            and self.sink_token is None
            and self.sink_secret is None
            and not is_loopback(urlsplit(self.sink_url).hostname)
        )

    def require_sink_authentication(self) -> None:
        """Raise `ConfigError` when grades would go unauthenticated to a remote SIS, unless opted out."""
        if self.sink_unauthenticated and not self.sink_allow_unauthenticated:
            raise ConfigError(
                "SYNC_SINK_TOKEN",
                "missing: SYNC_SINK_URL is not loopback; set SYNC_SINK_TOKEN(_FILE) or "
                "SYNC_SINK_SECRET(_FILE), or SYNC_SINK_ALLOW_UNAUTHENTICATED=true if the SIS authenticates us "
                "otherwise",
            )


def startup_warnings(settings: Settings) -> list[str]:
    """Settings that are valid but probably not what production wants, one sentence each (no values)."""
    warnings: list[str] = []
    if not settings.webhook_secrets:
        warnings.append(
            "WISEFLOW_WEBHOOK_SECRET is not set: every webhook is refused (401); polling still runs"
        )
    if not settings.uses_oauth and settings.api_key is not None:
        warnings.append("WISEFLOW_API_KEY in use: UNIwise recommends OAuth 2.0 client credentials instead")
    if settings.sink_url is None:
        warnings.append(
            "SYNC_SINK_URL is not set: grades are mirrored and queued in the outbox, delivered once it is set"
        )
    elif settings.sink_unauthenticated:
        warnings.append(
            "SYNC_SINK_TOKEN and SYNC_SINK_SECRET are not set (SYNC_SINK_ALLOW_UNAUTHENTICATED): the SIS "
            "cannot tell our grades from forged ones"
        )
    return warnings


def load_settings(env: Mapping[str, str]) -> Settings:
    """Parse every variable from `env`; raise `ConfigError` naming the first bad one."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in fields(Settings):
        name: str = spec.metadata["env"]
        found = setting_text(env, name, from_file=spec.metadata["from_file"])
        if found is not None:
            sources[spec.name], raw = found
            values[spec.name] = spec.metadata["parse"](name, raw)
    settings = Settings(**values)
    if settings.client_id is not None and settings.client_secret is None:
        raise ConfigError("WISEFLOW_CLIENT_SECRET", "missing: required with WISEFLOW_CLIENT_ID")
    if settings.client_secret is not None and settings.client_id is None:
        raise ConfigError("WISEFLOW_CLIENT_ID", "missing: required with WISEFLOW_CLIENT_SECRET")
    for webhook_secret in settings.webhook_secrets:
        problem = key_problem(settings.webhook_scheme, webhook_secret.reveal())
        if problem is not None:
            raise ConfigError(sources["webhook_secrets"], problem)
    return settings
