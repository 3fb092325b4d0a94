"""One frozen settings object, parsed once from a mapping (the environment) by `load_settings`.

A missing or malformed value raises `ConfigError` naming the variable and never echoing its value.
Secrets are wrapped in `Secret`, whose `repr` and `str` are masked, so a settings object can be logged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar
from urllib.parse import urlsplit

from service.core.ports import WEBHOOK_EVENTS
from service.errors import ConfigError

PRODUCTION_API_URL: Final = "https://europe-api.wiseflow.net/v1"
STAGING_API_URL: Final = "https://europe-stage-api.wiseflow.net/v1"
WEBHOOK_SCHEMES: Final = ("wiseflow", "standard")
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The standard OTEL_TRACES_SAMPLER values (OpenTelemetry SDK environment specification).
SAMPLER_NAMES: Final = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
# WISEflow's documented ceilings per credential set; our budgets must stay at or under them.
WISEFLOW_MAX_PER_SECOND: Final = 200
WISEFLOW_MAX_PER_MINUTE: Final = 5000

T = TypeVar("T")


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


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of wiseflow-sync (names as in DESIGN.md), with its default."""

    api_url: str = PRODUCTION_API_URL
    client_id: str | None = None
    client_secret: Secret | None = None
    api_key: Secret | None = None
    client_name: str = "wiseflow-sync"
    webhook_secrets: tuple[Secret, ...] = ()
    webhook_scheme: str = "wiseflow"
    webhook_signature_header: str = "X-Wiseflow-Signature"
    webhook_tolerance: float = 300.0
    webhook_max_attempts: int = 8
    database: str = "wiseflow-sync.sqlite3"
    http_host: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    http_port: int = 8080
    poll_interval: float = 900.0
    reconcile_interval: float = 86400.0
    rate_per_second: int = 20
    rate_per_minute: int = 1000
    max_wait: float = 300.0
    sink_url: str | None = None
    concurrency: int = 4
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retry_attempts: int = 5
    retry_base: float = 0.5
    retry_cap: float = 30.0
    retry_after_max: float = 60.0
    call_deadline: float = 120.0
    log_level: str = "INFO"
    otel_service_name: str = "wiseflow-sync"
    otel_endpoint: str | None = None
    otel_sampler: str = "parentbased_always_on"
    otel_sampler_arg: float | None = None
    public_webhook_url: str | None = None
    webhook_events: tuple[str, ...] = WEBHOOK_EVENTS

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


def startup_warnings(settings: Settings) -> list[str]:
    """Settings that are valid but probably not what production wants, one sentence each (no values)."""
    warnings: list[str] = []
    if not settings.webhook_secrets:
        warnings.append(
            "WISEFLOW_WEBHOOK_SECRET is not set: every webhook is refused (401); polling still runs"
        )
    api = urlsplit(settings.api_url)
    if api.scheme != "https" and api.hostname not in LOOPBACK_HOSTS:
        warnings.append("WISEFLOW_API_URL is not https: tokens and grades would cross the network unencrypted")
    if not settings.uses_oauth and settings.api_key is not None:
        warnings.append("WISEFLOW_API_KEY in use: UNIwise recommends OAuth 2.0 client credentials instead")
    if settings.sink_url is None:
        warnings.append("SYNC_SINK_URL is not set: grades are mirrored and exportable but delivered nowhere")
    return warnings


def load_settings(env: Mapping[str, str]) -> Settings:
    """Parse every variable from `env`; raise `ConfigError` naming the first bad one."""
    r = _Reader(env)
    client_id = r.text("WISEFLOW_CLIENT_ID")
    client_secret = r.secret("WISEFLOW_CLIENT_SECRET")
    if client_id is not None and client_secret is None:
        raise ConfigError("WISEFLOW_CLIENT_SECRET", "missing: required with WISEFLOW_CLIENT_ID")
    if client_secret is not None and client_id is None:
        raise ConfigError("WISEFLOW_CLIENT_ID", "missing: required with WISEFLOW_CLIENT_SECRET")
    per_second = r.number("SYNC_RATE_PER_SECOND", int, 20, low=1, high=WISEFLOW_MAX_PER_SECOND)
    per_minute = r.number("SYNC_RATE_PER_MINUTE", int, 1000, low=1, high=WISEFLOW_MAX_PER_MINUTE)
    return Settings(
        api_url=r.url("WISEFLOW_API_URL", PRODUCTION_API_URL),
        client_id=client_id,
        client_secret=client_secret,
        api_key=r.secret("WISEFLOW_API_KEY"),
        client_name=r.text("WISEFLOW_CLIENT_NAME") or "wiseflow-sync",
        webhook_secrets=r.secrets("WISEFLOW_WEBHOOK_SECRET"),
        webhook_scheme=r.choice("WISEFLOW_WEBHOOK_SCHEME", WEBHOOK_SCHEMES, "wiseflow"),
        webhook_signature_header=r.header("WISEFLOW_WEBHOOK_SIGNATURE_HEADER", "X-Wiseflow-Signature"),
        webhook_tolerance=r.number("WISEFLOW_WEBHOOK_TOLERANCE", float, 300.0, low=1, high=86400),
        webhook_max_attempts=r.number("SYNC_WEBHOOK_MAX_ATTEMPTS", int, 8, low=1, high=1000),
        database=r.text("SYNC_DATABASE") or "wiseflow-sync.sqlite3",
        http_host=r.text("SYNC_HTTP_HOST") or "0.0.0.0",  # noqa: S104 - see Settings.http_host
        http_port=r.number("SYNC_HTTP_PORT", int, 8080, low=1, high=65535),
        poll_interval=r.number("SYNC_POLL_INTERVAL", float, 900.0, low=1, high=7 * 86400),
        reconcile_interval=r.number("SYNC_RECONCILE_INTERVAL", float, 86400.0, low=0, high=365 * 86400),
        rate_per_second=per_second,
        rate_per_minute=per_minute,
        max_wait=r.number("SYNC_MAX_WAIT", float, 300.0, low=0, high=86400),
        sink_url=r.optional_url("SYNC_SINK_URL"),
        concurrency=r.number("SYNC_CONCURRENCY", int, 4, low=1, high=64),
        connect_timeout=r.number("SYNC_CONNECT_TIMEOUT", float, 5.0, low=0.1, high=300),
        read_timeout=r.number("SYNC_READ_TIMEOUT", float, 30.0, low=0.1, high=600),
        retry_attempts=r.number("SYNC_RETRY_ATTEMPTS", int, 5, low=1, high=20),
        retry_base=r.number("SYNC_RETRY_BASE", float, 0.5, low=0.01, high=60),
        retry_cap=r.number("SYNC_RETRY_CAP", float, 30.0, low=0.1, high=3600),
        retry_after_max=r.number("SYNC_RETRY_AFTER_MAX", float, 60.0, low=0, high=86400),
        call_deadline=r.number("SYNC_CALL_DEADLINE", float, 120.0, low=1, high=86400),
        log_level=r.choice("LOG_LEVEL", LOG_LEVELS, "INFO", upper=True),
        otel_service_name=r.text("OTEL_SERVICE_NAME") or "wiseflow-sync",
        otel_endpoint=r.optional_url("OTEL_EXPORTER_OTLP_ENDPOINT"),
        otel_sampler=r.choice("OTEL_TRACES_SAMPLER", SAMPLER_NAMES, "parentbased_always_on"),
        otel_sampler_arg=r.number("OTEL_TRACES_SAMPLER_ARG", float, None, low=0, high=1),
        public_webhook_url=parse_webhook_url("SYNC_PUBLIC_WEBHOOK_URL", r.text("SYNC_PUBLIC_WEBHOOK_URL")),
        webhook_events=parse_webhook_events("SYNC_WEBHOOK_EVENTS", r.text("SYNC_WEBHOOK_EVENTS")),
    )


def parse_webhook_url(name: str, raw: str | None) -> str | None:
    """The public URL WISEflow delivers webhooks to: https (http only on loopback), no credentials."""
    if raw is None or raw.strip() == "":
        return None
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, "malformed: expected an https URL")
    # WISEflow delivers to https only; plain http is allowed for loopback (the simulator, local tests).
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
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


class _Reader:
    """Reads typed values from the environment; every error names the variable, never the value."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def secret(self, name: str) -> Secret | None:
        value = self.text(name)
        return None if value is None else Secret(value)

    def secrets(self, name: str) -> tuple[Secret, ...]:
        """Comma-separated secrets, so one can be rotated without losing events."""
        value = self.text(name)
        if value is None:
            return ()
        parts = [p.strip() for p in value.split(",")]
        if any(p == "" for p in parts):
            raise ConfigError(name, "malformed: an empty entry in the comma-separated list")
        return tuple(Secret(p) for p in parts)

    def number(self, name: str, kind: Callable[[str], T], default: T, *, low: float, high: float) -> T:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            label = "a whole number" if kind is int else "a number"
            raise ConfigError(name, f"malformed: expected {label}") from None
        number = float(value)  # type: ignore[arg-type]
        if math.isnan(number) or not low <= number <= high:
            raise ConfigError(name, f"out of range: expected {low:g} to {high:g}")
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str, *, upper: bool = False) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise ConfigError(name, f"malformed: expected one of {', '.join(allowed)}")
        return value

    def header(self, name: str, default: str) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        if not all(c.isalnum() or c in "-_" for c in raw):
            raise ConfigError(name, "malformed: not an HTTP header name")
        return raw

    def url(self, name: str, default: str) -> str:
        return self.optional_url(name) or default

    def optional_url(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(name, "malformed: expected an http(s) URL")
        if parts.username or parts.password:
            raise ConfigError(name, "malformed: credentials do not belong in the URL")
        return raw.rstrip("/")
