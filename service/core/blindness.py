"""When is the service blind to webhooks, and which flows must it catch up on? Pure decisions.

WISEflow redelivers a failed webhook 8 times, 15 minutes apart: an event is lost to us only when we could
not take it for longer than that horizon. Two ways to be blind that long:

- *downtime*: the previous process's last heartbeat is more than the horizon before this start;
- *silence*: the service ran, flows were active, yet no delivery at all arrived for longer than the
  horizon (a broken subscription, a firewall, a wrong URL).

Either way the answer is a catch-up: refresh, at once and each once, the flows active during the gap. A
quiet night (no flow in participation or marking) costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

# 8 retries x 15 minutes (docs/wiseflow.md): after this, WISEflow has given up on an event we did not take.
REDELIVERY_HORIZON: Final = 8 * 15 * 60.0
# The one state in which a flow produces no more events.
_QUIET_STATES: Final = frozenset({"ARCHIVED"})
# Participation under way: events may come at any moment, whatever the dates say.
_ACTIVE_STATES: Final = frozenset({"PARTICIPATION_STARTED", "PARTICIPATION_ENDED"})


@dataclass(frozen=True, slots=True)
class BlindGap:
    """A stretch of wall time (Unix s) during which webhooks may have been lost, and why."""

    start: float
    end: float
    cause: str  # "downtime" | "silence"


@dataclass(frozen=True, slots=True)
class MirroredFlow:
    """A mirrored flow: the state we last saw it in, and its participation and marking windows (Unix s)."""

    flow_id: int
    state: str
    participation_start: int | None = None
    participation_end: int | None = None
    marking_start: int | None = None
    marking_end: int | None = None
    last_change: float | None = None  # when one of its grades last changed in the mirror


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


def active_in(flow: MirroredFlow, gap: BlindGap, horizon: float = REDELIVERY_HORIZON) -> bool:
    """True when `flow` was active during `gap`: in participation as we last saw it, its participation or
    marking window overlaps the gap, or its grades were still changing within `horizon` before the gap
    (WISEflow changes grades after marking ends). A flow quiet all along (concluded and settled, or not
    started yet) produced no event we could have missed; the polling plan and reconciliation cover it."""
    if flow.state in _QUIET_STATES:
        return False
    if flow.state in _ACTIVE_STATES:
        return True
    if flow.last_change is not None and flow.last_change >= gap.start - horizon:
        return True
    windows = ((flow.participation_start, flow.participation_end), (flow.marking_start, flow.marking_end))
    return any(
        start is not None and start <= gap.end and (end is None or end >= gap.start) for start, end in windows
    )


def flows_to_catch_up(
    flows: Iterable[MirroredFlow], gap: BlindGap, horizon: float = REDELIVERY_HORIZON
) -> list[int]:
    """The ids of the flows active during `gap`, each once, in id order."""
    return sorted({f.flow_id for f in flows if active_in(f, gap, horizon)})
