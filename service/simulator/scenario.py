"""Scenarios: the faults the simulator injects on demand (`POST /_sim/scenario`).

A body such as ``{"maintenance": {"seconds": 30, "retry_after": 10}, "latency_ms": 200}`` is validated as a
whole before anything changes; an unknown key or a bad value raises `ScenarioError` with a message that
names it. Windows are kept in monotonic seconds; the time is a parameter. A window can also be opened
with no end (``{"open": true, "retry_after": 1}``) and closed later (``{"open": false}``): a test then
holds the fault until it has seen what it waits for, whatever the machine's load.

Besides faults of the API, a scenario can make the webhooks depart from what the service assumes, so
that `preflight` (and a receiver) can be shown each mismatch: `webhook_signature_header` (the signature
under another header), `webhook_signing_secret` (signed with another secret than the subscription's),
`webhook_omit` (body fields left out, e.g. ``["sequence"]`` or ``["data.flowId"]``) and
`webhook_timestamp_offset` (seconds added to the timestamp WISEflow sends: negative is stale). And
`rate_per_second` / `rate_per_minute` change the simulator's limits (its headers and its 429s). And
`shapes` switches the success envelopes between the snapshot's examples (`"examples"`: `"error": null`,
`"data": null` where there is none) and the schema's own form (`"schema"`: those parts left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from service.simulator.config import SHAPES, SimConfig

MAINTENANCE_MODES: Final = ("503", "refuse")
_RATES: Final = ("error_rate", "sis_error_rate", "duplicate_rate", "drop_rate")
_SECONDS: Final = ("token_ttl", "redelivery_interval")
_SWITCHES: Final = ("reorder", "frozen")
_LIMITS: Final = ("rate_per_second", "rate_per_minute")
_WEBHOOK_KEYS: Final = (
    "webhook_signature_header",
    "webhook_signing_secret",
    "webhook_omit",
    "webhook_timestamp_offset",
)
KNOWN_KEYS: Final = (
    "maintenance", "storm_429", "latency_ms", "reset", "shapes", *_SWITCHES, *_SECONDS, *_RATES, *_LIMITS,
    *_WEBHOOK_KEYS,
)  # fmt: skip
# The body fields a scenario may leave out of a webhook (dotted: inside `data`).
OMITTABLE_FIELDS: Final = ("id", "sequence", "event", "timestamp", "data", "data.flowId", "data.participantId")
MAX_LATENCY_MS: Final = 60_000
MAX_WINDOW_S: Final = 86_400
MAX_LIMIT: Final = 1_000_000


class ScenarioError(ValueError):
    """A scenario body the simulator refuses; the message says which key and why."""


@dataclass(slots=True)
class Scenario:
    """The faults in force. Rates and switches start from the config; windows start closed."""

    error_rate: float
    duplicate_rate: float
    drop_rate: float
    reorder: bool
    token_ttl: float
    redelivery_interval: float
    rate_per_second: int
    rate_per_minute: int
    shapes: str = "examples"
    sis_error_rate: float = 0.0
    latency_ms: float = 0.0
    # The chaos profile's background clock leaves the world alone while frozen (a test's final check).
    frozen: bool = False
    maintenance_until: float = 0.0
    maintenance_retry_after: int = 0
    maintenance_mode: str = "503"
    storm_until: float = 0.0
    storm_retry_after: int = 0
    webhook_signature_header: str | None = None
    webhook_signing_secret: str | None = None
    webhook_omit: tuple[str, ...] = ()
    webhook_timestamp_offset: float = 0.0

    @classmethod
    def from_config(cls, config: SimConfig) -> Scenario:
        """The scenario a fresh simulator starts with."""
        return cls(
            config.error_rate,
            config.duplicate_rate,
            config.drop_rate,
            config.reorder,
            config.token_ttl,
            config.redelivery_interval,
            config.rate_per_second,
            config.rate_per_minute,
            config.shapes,
        )

    def in_maintenance(self, now: float) -> bool:
        """True while a maintenance window is open."""
        return now < self.maintenance_until

    def in_storm(self, now: float) -> bool:
        """True while a 429 storm lasts."""
        return now < self.storm_until

    def apply(self, body: Any, now: float, config: SimConfig) -> None:
        """Validate `body` completely, then apply it; `{"reset": true}` first restores the config's values."""
        updates = parse_scenario(body, now)
        if updates.pop("reset", False):
            fresh = Scenario.from_config(config)
            for name in self.__slots__:
                setattr(self, name, getattr(fresh, name))
        for name, value in updates.items():
            setattr(self, name, value)

    def to_json(self, now: float) -> dict[str, Any]:
        """What is in force now, for `GET /_sim/scenario`."""
        return {
            "maintenance": {
                "active": self.in_maintenance(now),
                "seconds_left": _seconds_left(self.maintenance_until, now),
                "retry_after": self.maintenance_retry_after,
                "mode": self.maintenance_mode,
            },
            "storm_429": {
                "active": self.in_storm(now),
                "seconds_left": _seconds_left(self.storm_until, now),
                "retry_after": self.storm_retry_after,
            },
            **{
                name: getattr(self, name)
                for name in (*_RATES, "latency_ms", *_SECONDS, *_SWITCHES, *_LIMITS, "shapes")
            },
            "webhook_signature_header": self.webhook_signature_header,
            # Never the secret itself: only whether one is in force.
            "webhook_signing_secret": None if self.webhook_signing_secret is None else "***",
            "webhook_omit": list(self.webhook_omit),
            "webhook_timestamp_offset": self.webhook_timestamp_offset,
        }


def _seconds_left(until: float, now: float) -> float | None:
    """Seconds until a window closes; None for a window opened until closed (JSON has no infinity)."""
    return None if math.isinf(until) else max(0.0, until - now)


def parse_scenario(body: Any, now: float) -> dict[str, Any]:
    """The attribute updates a scenario body asks for; raises `ScenarioError`."""
    if not isinstance(body, dict) or not body:
        raise ScenarioError(
            f"the scenario must be a non-empty JSON object with keys among {', '.join(KNOWN_KEYS)}"
        )
    unknown = sorted(set(body) - set(KNOWN_KEYS))
    if unknown:
        raise ScenarioError(f"unknown scenario key(s): {', '.join(unknown)}; known: {', '.join(KNOWN_KEYS)}")
    updates: dict[str, Any] = {}
    if "reset" in body:
        if body["reset"] is not True:
            raise ScenarioError("reset must be true")
        updates["reset"] = True
    for name in _RATES:
        if name in body:
            updates[name] = _number(body[name], name, 0.0, 1.0)
    if "latency_ms" in body:
        updates["latency_ms"] = _number(body["latency_ms"], "latency_ms", 0.0, MAX_LATENCY_MS)
    for name in _SECONDS:
        if name in body:
            updates[name] = _number(body[name], name, 0.001, MAX_WINDOW_S)
    for name in _LIMITS:
        if name in body:
            updates[name] = int(_number(body[name], name, 1, MAX_LIMIT, integer=True))
    updates.update(_choices(body))
    updates.update(_webhook_updates(body))
    if "maintenance" in body:
        updates.update(_window(body["maintenance"], "maintenance", now, allow_mode=True))
    if "storm_429" in body:
        updates.update(_window(body["storm_429"], "storm_429", now, allow_mode=False))
    return updates


def _choices(body: dict[str, Any]) -> dict[str, Any]:
    """The switches (true or false) and the envelope shapes a scenario body asks for."""
    updates: dict[str, Any] = {}
    for name in _SWITCHES:
        if name in body:
            if not isinstance(body[name], bool):
                raise ScenarioError(f"{name} must be true or false")
            updates[name] = body[name]
    if "shapes" in body:
        if body["shapes"] not in SHAPES:
            raise ScenarioError(f"shapes must be one of {', '.join(SHAPES)}")
        updates["shapes"] = body["shapes"]
    return updates


def _webhook_updates(body: dict[str, Any]) -> dict[str, Any]:
    """The webhook deviations a scenario body asks for (null clears a header or secret override)."""
    updates: dict[str, Any] = {}
    if "webhook_signature_header" in body:
        header = body["webhook_signature_header"]
        valid = (
            isinstance(header, str) and 0 < len(header) <= 64 and all(c.isalnum() or c in "-_" for c in header)
        )
        if header is not None and not valid:
            raise ScenarioError("webhook_signature_header must be an HTTP header name or null")
        updates["webhook_signature_header"] = header
    if "webhook_signing_secret" in body:
        secret = body["webhook_signing_secret"]
        if secret is not None and (not isinstance(secret, str) or not 0 < len(secret) <= 256):
            raise ScenarioError("webhook_signing_secret must be a non-empty string or null")
        updates["webhook_signing_secret"] = secret
    if "webhook_omit" in body:
        omit = body["webhook_omit"]
        if not isinstance(omit, list) or not all(isinstance(f, str) and f in OMITTABLE_FIELDS for f in omit):
            raise ScenarioError(f"webhook_omit must be a list among {', '.join(OMITTABLE_FIELDS)}")
        updates["webhook_omit"] = tuple(dict.fromkeys(omit))
    if "webhook_timestamp_offset" in body:
        offset = body["webhook_timestamp_offset"]
        updates["webhook_timestamp_offset"] = _number(
            offset, "webhook_timestamp_offset", -MAX_WINDOW_S, MAX_WINDOW_S, integer=True
        )
    return updates


def _window(raw: Any, key: str, now: float, *, allow_mode: bool) -> dict[str, Any]:
    """A window: `{"seconds": S, "retry_after": R}`, or `{"open": true|false, ...}` with no end of its own."""
    allowed = {"seconds", "open", "retry_after", "mode"} if allow_mode else {"seconds", "open", "retry_after"}
    if not isinstance(raw, dict) or ("seconds" in raw) == ("open" in raw) or set(raw) - allowed:
        extras = ", ".join(sorted(allowed - {"seconds", "open"}))
        raise ScenarioError(f"{key} must be an object with either seconds or open, and optionally {extras}")
    prefix = "maintenance" if key == "maintenance" else "storm"
    if "open" in raw:
        if not isinstance(raw["open"], bool):
            raise ScenarioError(f"{key}.open must be true or false")
        if not raw["open"]:
            if set(raw) != {"open"}:
                raise ScenarioError(f"{key}: closing a window takes only open: false")
            return {f"{prefix}_until": 0.0}
        seconds, until = 1.0, math.inf
    else:
        seconds = _number(raw["seconds"], f"{key}.seconds", 0.0, MAX_WINDOW_S)
        until = now + seconds
    default_wait = max(1, math.ceil(seconds))
    retry_after = int(
        _number(raw.get("retry_after", default_wait), f"{key}.retry_after", 0, MAX_WINDOW_S, integer=True)
    )
    out: dict[str, Any] = {f"{prefix}_until": until, f"{prefix}_retry_after": retry_after}
    if allow_mode:
        mode = raw.get("mode", "503")
        if mode not in MAINTENANCE_MODES:
            raise ScenarioError(f"maintenance.mode must be one of {', '.join(MAINTENANCE_MODES)}")
        out["maintenance_mode"] = mode
    return out


def _number(raw: Any, name: str, low: float, high: float, *, integer: bool = False) -> float:
    """A JSON number within [low, high] (an integer when asked); booleans are not numbers here."""
    kind = "an integer" if integer else "a number"
    problem = ScenarioError(f"{name} must be {kind} between {low:g} and {high:g}")
    if isinstance(raw, bool) or not isinstance(raw, int | float) or (integer and not isinstance(raw, int)):
        raise problem
    value = float(raw)
    if not math.isfinite(value) or not low <= value <= high:
        raise problem
    return value
