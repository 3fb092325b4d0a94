"""Blind-spot decisions: downtime and silence beyond WISEflow's redelivery horizon, flows active in a gap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.core.blindness import (
    REDELIVERY_HORIZON,
    BlindGap,
    FlowSpan,
    downtime_gap,
    flows_to_catch_up,
    is_active_during,
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


def test_active_flows_are_chosen_by_dates_then_state() -> None:
    """Flows overlapping the gap are chosen; archived never; without dates, live states only."""
    gap = BlindGap(100.0, 200.0, "silence")
    flows = [
        FlowSpan(1, "PARTICIPATION_STARTED", 50.0, 150.0),  # overlaps
        FlowSpan(2, "CONCLUDED", 10.0, 90.0),  # ended before the gap
        FlowSpan(3, "ACTIVATED", 250.0, None),  # starts after
        FlowSpan(4, "ARCHIVED", None, None),
        FlowSpan(5, "PARTICIPATION_ENDED", None, None),  # no dates, live state
        FlowSpan(6, "NOT_ACTIVATED", None, None),
        FlowSpan(7, "CONCLUDED", 10.0, None),  # marking open-ended
    ]
    assert flows_to_catch_up(flows, gap) == [1, 5, 7]


@given(
    start=st.floats(0, 1e6),
    length=st.floats(0, 1e6),
    flow_start=st.none() | st.floats(0, 2e6),
    flow_len=st.none() | st.floats(0, 2e6),
)
def test_a_flow_active_during_a_gap_is_active_during_any_larger_gap(
    start: float, length: float, flow_start: float | None, flow_len: float | None
) -> None:
    """Widening a gap never drops a flow from the catch-up."""
    end = None if flow_len is None or flow_start is None else flow_start + flow_len
    flow = FlowSpan(1, "PARTICIPATION_STARTED", flow_start, end)
    small = BlindGap(start, start + length, "silence")
    large = BlindGap(start - 1, start + length + 1, "silence")
    assert not is_active_during(flow, small) or is_active_during(flow, large)
