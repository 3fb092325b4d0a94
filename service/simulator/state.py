"""Everything one simulator instance holds, in one object the handlers share (`SIM` app key).

Nothing here does I/O except through the `Dispatcher`; time comes from the `Clock` passed in.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from service.core.clock import Clock
from service.simulator.advance import Change, apply_step
from service.simulator.auth import TokenStore
from service.simulator.config import SimConfig
from service.simulator.ratewindow import RateWindows
from service.simulator.scenario import Scenario
from service.simulator.sis import SisScenario
from service.simulator.webhooks import Dispatcher, Event, Target
from service.simulator.world import Json, World

JOURNAL_SIZE: Final = 100_000
MAX_SUBSCRIPTIONS: Final = 20  # WISEflow caps webhooks per licence; the exact number is not public


@dataclass(slots=True)
class Subscription:
    """A webhook subscription made through `/v1/webhooks`, kept in memory."""

    id: int
    title: str
    url: str
    active: bool
    events: list[str]
    secret: str | None
    created_at: float
    updated_at: float

    def to_json(self) -> Json:
        """The spec's `webhook` object (the secret is never shown)."""
        return {
            "id": self.id,
            "title": self.title,
            "url": self.url,
            "active": self.active,
            "events": list(self.events),
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }


@dataclass(slots=True)
class SisLedger:
    """The fake SIS: every grade delivery received, and which idempotency keys it has seen.

    A repeated key is a duplicate (answered 200, the record kept once); a repeated key whose record
    differs from the first one is also a conflict: the sender reused a key for another grade version. A
    record with `"withdrawn": true` clears the participant's grade (counted in `withdrawals`).
    """

    deliveries: list[Json] = field(default_factory=list)
    keys: dict[str, Json] = field(default_factory=dict)
    duplicates: int = 0
    conflicts: int = 0

    def record(self, key: str, body: Json, now: float) -> bool:
        """Record one delivery; True when its key was seen before (a duplicate)."""
        first = self.keys.setdefault(key, body)
        duplicate = first is not body
        conflict = duplicate and first != body
        self.duplicates += duplicate
        self.conflicts += conflict
        self.deliveries.append(
            {"time": now, "idempotencyKey": key, "duplicate": duplicate, "conflict": conflict, **body}
        )
        return duplicate

    def clear(self) -> None:
        """Forget every delivery."""
        self.deliveries.clear()
        self.keys.clear()
        self.duplicates = self.conflicts = 0

    def to_json(self) -> Json:
        """`GET /_sis/grades`."""
        return {
            "deliveries": list(self.deliveries),
            "unique": len(self.keys),
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "withdrawals": sum(1 for body in self.keys.values() if body.get("withdrawn") is True),
        }


def iso(unix: float) -> str:
    """An RFC 3339 UTC timestamp, as the spec's date-time fields carry."""
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimState:
    """The world, the faults in force, credentials, windows, journal, subscriptions, SIS and webhooks."""

    def __init__(self, config: SimConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.world = World(config.seed, config.flows, config.participants)
        # Separate streams, so adding a webhook option never changes which grades an advance draws.
        self.rng = random.Random(config.seed)
        self.scenario = Scenario.from_config(config)
        self.tokens = TokenStore()
        self.windows = RateWindows(config.rate_per_second, config.rate_per_minute)
        self.journal: deque[Json] = deque(maxlen=JOURNAL_SIZE)
        self.subscriptions: dict[int, Subscription] = {}
        self.next_subscription_id = 1
        self.sis = SisLedger()
        self.sis_scenario = SisScenario()
        self.dispatcher = Dispatcher(config, self.scenario, clock, random.Random(config.seed + 1))
        self.fault_rng = random.Random(config.seed + 2)

    def advance(self, step: dict[str, int]) -> list[Change]:
        """Change the world by `step` and emit the webhooks of the changes."""
        changes = apply_step(self.world, self.rng, step, self.clock.wall())
        events = [Event(c.sequence, c.event, c.flow_id, c.participant_id) for c in changes]
        self.dispatcher.emit(events, self.targets())
        return changes

    def targets(self) -> list[tuple[Target, frozenset[str] | None]]:
        """Every webhook destination with the events it wants (None: all): --webhook-url and subscriptions."""
        cfg = self.config
        out: list[tuple[Target, frozenset[str] | None]] = []
        if cfg.webhook_url:
            target = Target(
                cfg.webhook_url, cfg.webhook_secret, cfg.webhook_scheme, cfg.webhook_signature_header
            )
            out.append((target, None))
        for sub in self.subscriptions.values():
            if sub.active:
                out.append((self.subscription_target(sub), frozenset(sub.events)))
        return out

    def subscription_target(self, sub: Subscription) -> Target:
        """A subscription's destination; signed with its own secret when it gave one."""
        cfg = self.config
        secret = sub.secret or cfg.webhook_secret
        return Target(sub.url, secret, cfg.webhook_scheme, cfg.webhook_signature_header, sub.id)

    def truth(self) -> Json:
        """`GET /_sim/truth`: every flow as it is, with its participants and assessments."""
        w = self.world
        flows = [
            {
                "flow": w.basic_flow(fid),
                "state": w.search_record(fid)["state"],
                "participants": w.participants(fid, 0, w.participants_per_flow),
                "assessments": w.assessments(fid),
            }
            for fid in w.flows
        ]
        return {"sequence": w.sequence, "flows": flows}


SIM: Final = web.AppKey("sim", SimState)
