"""Blind-spot decisions: downtime and silence beyond WISEflow's redelivery horizon, flows active in a gap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.core.blindness import (
    REDELIVERY_HORIZON,
    BlindGap,
    MirroredFlow,
    downtime_gap,
    flows_to_catch_up,
    silence_gap,
)

T0 = 1_700_000_000.0


def test_horizon_is_eight_redeliveries_fifteen_minutes_apart() -> None:
    """The horizon is WISEflow's 8 x 15 min."""
    assert REDELIVERY_HORIZON == 7200.0


def test_first_start_is_not_blind() -> None:
    """Without a previous heartbeat there is no gap: the first full sync covers everything."""
    assert downtime_gap(None, T0) is None


def test_short_downtime_is_covered_by_redeliveries() -> None:
    """Down for exactly the horizon: WISEflow still redelivers, no gap."""
    assert downtime_gap(T0, T0 + REDELIVERY_HORIZON) is None


def test_long_downtime_is_a_gap() -> None:
    """Down one second longer than the horizon: a downtime gap from the last heartbeat to the start."""
    assert downtime_gap(T0, T0 + REDELIVERY_HORIZON + 1) == BlindGap(
        T0, T0 + REDELIVERY_HORIZON + 1, "downtime"
    )


def test_silence_counts_from_the_latest_cover() -> None:
    """Silence is measured from the latest of start, last delivery, last catch-up."""
    now = T0 + 10_000
    assert silence_gap(now, started_at=T0, last_delivery_at=now - 100, last_catchup_at=None) is None
    assert silence_gap(now, started_at=T0, last_delivery_at=None, last_catchup_at=now - 7200) is None
    gap = silence_gap(now, started_at=T0, last_delivery_at=T0 + 500, last_catchup_at=T0 + 100)
    assert gap == BlindGap(T0 + 500, now, "silence")


def test_only_flows_active_in_the_gap_are_caught_up_each_once() -> None:
    """Participation under way, a participation or marking window overlapping the gap, or grades changed
    shortly before it: caught up once; archived, settled, or not started until after: left to the plan."""
    gap = BlindGap(T0, T0 + 7200, "silence")
    t = int(T0)
    flows = [
        MirroredFlow(3, "PARTICIPATION_STARTED"),
        MirroredFlow(3, "PARTICIPATION_STARTED"),
        MirroredFlow(1, "CONCLUDED", marking_start=t - 86_400, marking_end=t + 60),
        MirroredFlow(5, "CONCLUDED", marking_start=t - 86_400, marking_end=t - 60),
        MirroredFlow(4, "ARCHIVED", marking_start=t, marking_end=t + 60),
        MirroredFlow(2, "ACTIVATED", participation_start=t + 3600, participation_end=t + 90_000),
        MirroredFlow(6, "NOT_ACTIVATED", participation_start=t + 86_400),
        MirroredFlow(7, "ACTIVATED", marking_start=t - 100),  # marking without an announced end
        MirroredFlow(8, "CONCLUDED", marking_end=t - 86_400, last_change=T0 - 600),  # grades still moving
        MirroredFlow(9, "CONCLUDED", marking_end=t - 86_400, last_change=T0 - 86_400),  # settled
    ]
    assert flows_to_catch_up(flows, gap, horizon=7200) == [1, 2, 3, 7, 8]


@given(
    heartbeat=st.floats(0, 1e9),
    down=st.floats(0, 1e5),
    horizon=st.floats(1, 1e4),
)
def test_downtime_gap_iff_down_longer_than_the_horizon(heartbeat: float, down: float, horizon: float) -> None:
    """A downtime gap exists exactly when the process was down longer than the horizon, and spans the outage."""
    gap = downtime_gap(heartbeat, heartbeat + down, horizon)
    assert (gap is not None) == ((heartbeat + down) - heartbeat > horizon)
    if gap is not None:
        assert (gap.start, gap.end) == (heartbeat, heartbeat + down)
