"""The simulator's configuration: one frozen object, built by `make_sim_config` from a profile and overrides.

The credentials and the webhook secret default to the service's own environment variables
(`WISEFLOW_CLIENT_ID`, `WISEFLOW_CLIENT_SECRET`, `WISEFLOW_API_KEY`, `WISEFLOW_WEBHOOK_SECRET`) so that a
service and a simulator started from the same environment agree without setup.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from yarl import URL

from service.core.signatures import standard_key

PROFILES: Final = ("calm", "chaos")
WEBHOOK_SCHEMES: Final = ("wiseflow", "standard")
# How a success envelope looks: as the OpenAPI snapshot's examples show it (`"error": null`, `"data": null`
# where there is none: what WISEflow most likely sends), or in the schema's own form (those parts left out).
SHAPES: Final = ("examples", "schema")
DEFAULT_CLIENT_ID: Final = "demo-client"
DEFAULT_CLIENT_SECRET: Final = "demo-secret"  # noqa: S105 - the documented demo credential
DEFAULT_API_KEY: Final = "demo-api-key"
DEFAULT_WEBHOOK_SECRET: Final = "demo-webhook-secret"  # noqa: S105 - the documented demo secret

# What "chaos" changes relative to "calm" (on top of its background clock).
CHAOS_DEFAULTS: Final[Mapping[str, Any]] = {
    "duplicate_rate": 0.2,
    "drop_rate": 0.05,
    "reorder": True,
    "error_rate": 0.02,
}


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything that shapes one simulator: its world, its limits and its webhook behaviour."""

    seed: int = 1
    profile: str = "calm"
    flows: int = 24
    participants: int = 25
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = field(default=DEFAULT_CLIENT_SECRET, repr=False)
    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    # 3599 s: the `expires_in` WISEflow documents for its one-hour tokens.
    token_ttl: float = 3599.0
    # WISEflow's documented ceilings per credential set.
    rate_per_second: int = 200
    rate_per_minute: int = 5000
    webhook_url: str | None = None
    webhook_scheme: str = "wiseflow"
    webhook_secret: str = field(default=DEFAULT_WEBHOOK_SECRET, repr=False)
    webhook_signature_header: str = "X-Wiseflow-Signature"
    # 15 minutes and 8 attempts: WISEflow's documented redelivery policy.
    redelivery_interval: float = 900.0
    max_attempts: int = 8
    # WISEflow's documented client timeout for a webhook delivery.
    delivery_timeout: float = 10.0
    duplicate_rate: float = 0.0
    drop_rate: float = 0.0
    reorder: bool = False
    error_rate: float = 0.0
    advance_interval: float = 5.0
    shapes: str = "examples"

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def background_advance(self) -> bool:
        """True when a background task changes the world every `advance_interval` seconds."""
        return self.profile == "chaos"


def _problems(cfg: SimConfig) -> list[str]:
    """Every invalid field of `cfg`, as short messages naming the field."""
    out: list[str] = []
    if cfg.profile not in PROFILES:
        out.append(f"profile must be one of {', '.join(PROFILES)}")
    if cfg.shapes not in SHAPES:
        out.append(f"shapes must be one of {', '.join(SHAPES)}")
    if cfg.webhook_scheme not in WEBHOOK_SCHEMES:
        out.append(f"webhook_scheme must be one of {', '.join(WEBHOOK_SCHEMES)}")
    for name in ("flows", "participants", "rate_per_second", "rate_per_minute", "max_attempts"):
        if getattr(cfg, name) < 1:
            out.append(f"{name} must be at least 1")
    for name in ("duplicate_rate", "drop_rate", "error_rate"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            out.append(f"{name} must be between 0 and 1")
    for name in ("token_ttl", "redelivery_interval", "delivery_timeout", "advance_interval"):
        if not getattr(cfg, name) > 0:
            out.append(f"{name} must be positive")
    if cfg.webhook_scheme == "standard":
        try:
            standard_key(cfg.webhook_secret)
        except ValueError:
            out.append("webhook_secret must be base64 after its whsec_ prefix")
    if cfg.webhook_url is not None and not is_http_url(cfg.webhook_url):
        out.append("webhook_url must be an http(s) URL with a host")
    return out


def is_http_url(raw: str) -> bool:
    """True for an absolute http(s) URL with a host."""
    try:
        url = URL(raw)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def make_sim_config(profile: str = "calm", env: Mapping[str, str] | None = None, **overrides: Any) -> SimConfig:
    """A `SimConfig` for `profile`: profile defaults, then credentials from `env`, then `overrides`.

    Raises `ValueError` (one message naming the fields) for unknown fields or invalid values.
    """
    values: dict[str, Any] = {"profile": profile}
    if profile == "chaos":
        values.update(CHAOS_DEFAULTS)
    values.update(_from_env(env or {}))
    values.update(overrides)
    known = {f.name for f in dataclasses.fields(SimConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown simulator setting(s): {', '.join(unknown)}")
    return SimConfig(**values)


def _from_env(env: Mapping[str, str]) -> dict[str, str]:
    """Credentials and the webhook secret from the service's environment variables, when set."""
    names = {
        "WISEFLOW_CLIENT_ID": "client_id",
        "WISEFLOW_CLIENT_SECRET": "client_secret",
        "WISEFLOW_API_KEY": "api_key",
        "WISEFLOW_WEBHOOK_SECRET": "webhook_secret",
        "WISEFLOW_WEBHOOK_SIGNATURE_HEADER": "webhook_signature_header",
        "WISEFLOW_WEBHOOK_SCHEME": "webhook_scheme",
    }
    values = {field_name: env[var].strip() for var, field_name in names.items() if env.get(var, "").strip()}
    if "webhook_secret" in values:
        # The service accepts a comma-separated list (rotation); the newest, first, one signs.
        values["webhook_secret"] = values["webhook_secret"].split(",")[0].strip()
    return values
