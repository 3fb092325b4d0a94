"""When is the service blind to webhooks, and which flows must it catch up on? Pure decisions.

WISEflow redelivers a failed webhook 8 times, 15 minutes apart: an event is lost to us only when we could
not take it for longer than that horizon. Two ways to be blind that long:

- *downtime*: the previous process's last heartbeat is more than the horizon before this start;
- *silence*: the service ran, flows were active, yet no delivery at all arrived for longer than the
  horizon (a broken subscription, a firewall, a wrong URL).

Either way the answer is a catch-up: refresh, at once, every flow that was active during the gap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

# 8 retries x 15 minutes (FACTS.md): after this, WISEflow has given up on an event we did not take.
REDELIVERY_HORIZON: Final = 8 * 15 * 60.0
# States in which nothing changes any more (archived) or has begun to (not activated).
_QUIET_STATES: Final = frozenset({"ARCHIVED", "NOT_ACTIVATED"})


@dataclass(frozen=True, slots=True)
class BlindGap:
    """A stretch of wall time (Unix s) during which webhooks may have been lost, and why."""

    start: float
    end: float
    cause: str  # "downtime" | "silence"


@dataclass(frozen=True, slots=True)
class FlowSpan:
    """A flow's state and the time during which it can produce events (None: unknown or open-ended)."""

    flow_id: int
    state: str
    start: float | None
    end: float | None


def downtime_gap(
    previous_heartbeat: float | None, started_at: float, horizon: float = REDELIVERY_HORIZON
) -> BlindGap | None:
    """The gap left by the previous process when it stopped longer than `horizon` before `started_at`."""
    if previous_heartbeat is None:
        return None  # a first start: the initial full sync covers everything
    if started_at - previous_heartbeat <= horizon:
        return None  # WISEflow is still redelivering whatever we missed
    return BlindGap(previous_heartbeat, started_at, "downtime")


def silence_gap(
    now: float,
    *,
    started_at: float,
    last_delivery_at: float | None,
    last_catchup_at: float | None,
    horizon: float = REDELIVERY_HORIZON,
) -> BlindGap | None:
    """The gap since anything last covered us (start, a delivery, a catch-up), when longer than `horizon`."""
    covered = max(t for t in (started_at, last_delivery_at, last_catchup_at) if t is not None)
    if now - covered <= horizon:
        return None
    return BlindGap(covered, now, "silence")


def is_active_during(flow: FlowSpan, gap: BlindGap) -> bool:
    """True when `flow` could have produced events during `gap`."""
    if flow.state == "ARCHIVED":
        return False
    if flow.start is None and flow.end is None:
        # No dates known: trust the state alone.
        return flow.state not in _QUIET_STATES
    starts_before_gap_ends = flow.start is None or flow.start <= gap.end
    ends_after_gap_starts = flow.end is None or flow.end >= gap.start
    return starts_before_gap_ends and ends_after_gap_starts


def flows_to_catch_up(flows: Iterable[FlowSpan], gap: BlindGap) -> list[int]:
    """The ids of the flows active during `gap`, in id order."""
    return sorted(f.flow_id for f in flows if is_active_during(f, gap))
