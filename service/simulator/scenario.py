"""Scenarios: the faults the simulator injects on demand (`POST /_sim/scenario`).

A body such as ``{"maintenance": {"seconds": 30, "retry_after": 10}, "latency_ms": 200}`` is validated as a
whole before anything changes; an unknown key or a bad value raises `ScenarioError` with a message that
names it. Windows are kept in monotonic seconds; the time is a parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from service.simulator.config import SimConfig

MAINTENANCE_MODES: Final = ("503", "refuse")
_RATES: Final = ("error_rate", "sis_error_rate", "duplicate_rate", "drop_rate")
_SECONDS: Final = ("token_ttl", "redelivery_interval")
KNOWN_KEYS: Final = ("maintenance", "storm_429", "latency_ms", "reorder", "reset", *_SECONDS, *_RATES)
MAX_LATENCY_MS: Final = 60_000
MAX_WINDOW_S: Final = 86_400


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
    sis_error_rate: float = 0.0
    latency_ms: float = 0.0
    maintenance_until: float = 0.0
    maintenance_retry_after: int = 0
    maintenance_mode: str = "503"
    storm_until: float = 0.0
    storm_retry_after: int = 0

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
                "seconds_left": max(0.0, self.maintenance_until - now),
                "retry_after": self.maintenance_retry_after,
                "mode": self.maintenance_mode,
            },
            "storm_429": {
                "active": self.in_storm(now),
                "seconds_left": max(0.0, self.storm_until - now),
                "retry_after": self.storm_retry_after,
            },
            **{name: getattr(self, name) for name in (*_RATES, "latency_ms", *_SECONDS, "reorder")},
        }


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
    if "reorder" in body:
        if not isinstance(body["reorder"], bool):
            raise ScenarioError("reorder must be true or false")
        updates["reorder"] = body["reorder"]
    if "maintenance" in body:
        updates.update(_window(body["maintenance"], "maintenance", now, allow_mode=True))
    if "storm_429" in body:
        updates.update(_window(body["storm_429"], "storm_429", now, allow_mode=False))
    return updates


def _window(raw: Any, key: str, now: float, *, allow_mode: bool) -> dict[str, Any]:
    """A timed window: `{"seconds": S, "retry_after": R}` (and `mode` for maintenance)."""
    allowed = {"seconds", "retry_after", "mode"} if allow_mode else {"seconds", "retry_after"}
    if not isinstance(raw, dict) or "seconds" not in raw or set(raw) - allowed:
        raise ScenarioError(
            f"{key} must be an object with seconds and optionally {', '.join(sorted(allowed - {'seconds'}))}"
        )
    seconds = _number(raw["seconds"], f"{key}.seconds", 0.0, MAX_WINDOW_S)
    default_wait = max(1, math.ceil(seconds))
    retry_after = int(
        _number(raw.get("retry_after", default_wait), f"{key}.retry_after", 0, MAX_WINDOW_S, integer=True)
    )
    prefix = "maintenance" if key == "maintenance" else "storm"
    out: dict[str, Any] = {f"{prefix}_until": now + seconds, f"{prefix}_retry_after": retry_after}
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
