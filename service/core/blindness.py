"""When is the service blind to webhooks, and which flows must it catch up on? Pure decisions.

WISEflow redelivers a failed webhook 8 times, 15 minutes apart: an event is lost to us only when we could
not take it for longer than that horizon. Two ways to be blind that long:

- *downtime*: the previous process's last heartbeat is more than the horizon before this start;
- *silence*: the service ran, flows were active, yet no delivery at all arrived for longer than the
  horizon (a broken subscription, a firewall, a wrong URL).

Either way the answer is a catch-up: refresh, at once, every flow that could have changed during the gap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

# 8 retries x 15 minutes (docs/wiseflow.md): after this, WISEflow has given up on an event we did not take.
REDELIVERY_HORIZON: Final = 8 * 15 * 60.0
# The one state in which a flow produces no more events. Dates do not decide: WISEflow changes grades after
# the marking period ends and moves flows between states whatever their dates say (the simulator too).
_QUIET_STATES: Final = frozenset({"ARCHIVED"})


@dataclass(frozen=True, slots=True)
class BlindGap:
    """A stretch of wall time (Unix s) during which webhooks may have been lost, and why."""

    start: float
    end: float
    cause: str  # "downtime" | "silence"


@dataclass(frozen=True, slots=True)
class MirroredFlow:
    """A mirrored flow and the state we last saw it in."""

    flow_id: int
    state: str


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


def may_have_changed(flow: MirroredFlow) -> bool:
    """True when `flow` could have produced events during a gap: any flow not archived could have.

    A NOT_ACTIVATED flow counts too: its activation during the gap is itself an event we may have missed.
    """
    return flow.state not in _QUIET_STATES


def flows_to_catch_up(flows: Iterable[MirroredFlow]) -> list[int]:
    """The ids of the flows that may have changed during a gap, in id order."""
    return sorted(f.flow_id for f in flows if may_have_changed(f))
