"""The circuit breaker state machine on a ManualClock: openings, the single probe, legal transitions only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.breaker import LEGAL_TRANSITIONS, Breaker, BreakerPolicy, Permit, State, Transition
from service.core.clock import ManualClock
from service.errors import CircuitOpen

POLICY = BreakerPolicy(failure_threshold=3, open_base=2.0, open_cap=60.0, probe_timeout=10.0)


def make() -> tuple[Breaker, ManualClock, list[Transition]]:
    """A breaker on a fake clock that records its transitions."""
    clock = ManualClock()
    seen: list[Transition] = []
    return Breaker("http://api/v1", POLICY, clock, seen.append), clock, seen


def fail(breaker: Breaker, times: int, retry_after: float | None = None) -> None:
    """Report `times` failures of fresh permits."""
    for _ in range(times):
        breaker.record_failure(breaker.acquire(), "503", retry_after)


def test_opens_after_n_consecutive_failures() -> None:
    """Three consecutive failures open it; two do not."""
    breaker, _, seen = make()
    fail(breaker, 2)
    assert breaker.state == State.CLOSED
    fail(breaker, 1)
    assert (breaker.state, seen[-1].retry_after) == (State.OPEN, 2.0)


def test_a_success_resets_the_count() -> None:
    """Failures must be consecutive: a success in between starts over."""
    breaker, _, _ = make()
    fail(breaker, 2)
    breaker.record_success(breaker.acquire())
    fail(breaker, 2)
    assert breaker.state == State.CLOSED


def test_503_with_retry_after_opens_at_once_for_that_long_up_to_pause_max() -> None:
    """One 503 with Retry-After opens it for the Retry-After, honoured up to pause_max, not open_cap."""
    breaker, clock, seen = make()
    fail(breaker, 1, retry_after=5.0)
    with pytest.raises(CircuitOpen) as info:
        breaker.acquire()
    assert (breaker.state, info.value.retry_after) == (State.OPEN, 5.0)
    clock.advance(5.0)
    breaker.record_failure(breaker.acquire(), "503", retry_after=600.0)
    clock.advance(600.0)
    breaker.record_failure(breaker.acquire(), "503", retry_after=7200.0)
    assert [t.retry_after for t in seen if t.target is State.OPEN] == [5.0, 600.0, 3600.0]


def test_lift_ends_an_opening_a_retry_after_timed_and_the_next_caller_probes() -> None:
    """A 503 with Retry-After 3600, lifted: the next caller is the probe; a second lift has nothing to end."""
    breaker, _, seen = make()
    fail(breaker, 1, retry_after=3600.0)
    lifted = breaker.lift()
    probe = breaker.acquire()
    assert (lifted, probe.probe, breaker.state, breaker.lift()) == (True, True, State.HALF_OPEN, False)
    assert [t.target for t in seen] == [State.OPEN, State.HALF_OPEN]


def test_lift_leaves_an_opening_of_our_own_backoff() -> None:
    """Three failures without Retry-After open it on our backoff, which is no saved pause: lift keeps it."""
    breaker, _, _ = make()
    fail(breaker, 3)
    assert (breaker.lift(), breaker.retry_after()) == (False, POLICY.open_base)


def test_backoff_after_a_maintenance_window_starts_afresh() -> None:
    """Ten openings timed by 503 Retry-After, then a 502 on the probe: open for open_base, not 2**n."""
    breaker, clock, seen = make()
    fail(breaker, 1, retry_after=30.0)
    for _ in range(9):
        clock.advance(seen[-1].retry_after)
        breaker.record_failure(breaker.acquire(), "503 answer", retry_after=30.0)
    clock.advance(seen[-1].retry_after)
    breaker.record_failure(breaker.acquire(), "502 answer")
    clock.advance(seen[-1].retry_after)
    breaker.record_failure(breaker.acquire(), "502 answer")
    opened = [t.retry_after for t in seen if t.target is State.OPEN]
    assert opened[-2:] == [POLICY.open_base, 2 * POLICY.open_base]


def test_open_rejects_until_the_time_then_admits_exactly_one_probe() -> None:
    """While open everyone fails fast; afterwards the first caller probes and the rest still fail fast."""
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(1.9)
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    clock.advance(0.1)
    probe = breaker.acquire()
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    assert (probe.probe, breaker.state) == (True, State.HALF_OPEN)


def test_probe_success_closes() -> None:
    """A successful probe closes the circuit and callers pass again."""
    breaker, clock, seen = make()
    fail(breaker, 3)
    clock.advance(2.0)
    breaker.record_success(breaker.acquire())
    assert (breaker.state, breaker.acquire().probe) == (State.CLOSED, False)
    assert [t.target for t in seen] == [State.OPEN, State.HALF_OPEN, State.CLOSED]


def test_failed_probes_open_for_longer_each_time() -> None:
    """Without Retry-After the open time doubles with each failed probe, up to the cap."""
    breaker, clock, seen = make()
    fail(breaker, 3)
    for _ in range(7):
        clock.advance(seen[-1].retry_after)
        breaker.record_failure(breaker.acquire(), "timeout")
    opened = [t.retry_after for t in seen if t.target is State.OPEN]
    assert opened == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_a_lost_probe_is_replaced_after_the_probe_timeout() -> None:
    """A probe that never reports does not keep the circuit half-open forever."""
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(2.0)
    breaker.acquire()
    clock.advance(10.0)
    assert breaker.acquire().probe


def test_stale_permits_do_not_move_the_state() -> None:
    """A success from a request sent before the circuit opened does not close it."""
    breaker, _, _ = make()
    old = breaker.acquire()
    fail(breaker, 3)
    breaker.record_success(old)
    assert breaker.state == State.OPEN


def test_each_transition_names_its_reason() -> None:
    """The reason of an opening says why, for the one log line."""
    breaker, _, seen = make()
    fail(breaker, 3)
    assert seen[0].reason == "3 consecutive failures, last: 503"


Op = st.one_of(
    st.tuples(st.just("advance"), st.floats(min_value=0, max_value=30)),
    st.tuples(st.just("acquire"), st.none()),
    st.tuples(st.just("success"), st.integers(min_value=0, max_value=5)),
    st.tuples(st.just("failure"), st.integers(min_value=0, max_value=5)),
    st.tuples(st.just("failure_ra"), st.floats(min_value=0, max_value=120)),
)


@given(st.lists(Op, max_size=80))
def test_only_legal_transitions_and_one_probe_at_a_time(ops: list[tuple[str, object]]) -> None:
    """Any interleaving of callers gives legal, continuous transitions and never two live probes."""
    breaker, clock, seen = make()
    permits: list[Permit] = []
    probe_started: dict[int, float] = {}  # generation -> when its current probe was admitted
    for op, arg in ops:
        if op == "advance":
            clock.advance(float(arg))  # type: ignore[arg-type]
        elif op == "acquire":
            try:
                permit = breaker.acquire()
            except CircuitOpen:
                assert breaker.state is not State.CLOSED
                continue
            if permit.probe:
                earlier = probe_started.get(permit.generation)
                # `earlier + timeout`, as the breaker computes it: `now - earlier` can round just below.
                assert earlier is None or clock.monotonic() >= earlier + POLICY.probe_timeout
                probe_started[permit.generation] = clock.monotonic()
            permits.append(permit)
        elif permits:
            permit = permits[int(arg) % len(permits)]  # type: ignore[call-overload]
            if op == "success":
                breaker.record_success(permit)
            else:
                retry_after = float(arg) if op == "failure_ra" else None  # type: ignore[arg-type]
                breaker.record_failure(permit, "5xx", retry_after)
    for t in seen:
        assert (t.source, t.target) in LEGAL_TRANSITIONS
    for before, after in zip(seen, seen[1:], strict=False):
        assert before.target == after.source
    assert (seen[-1].target if seen else State.CLOSED) == breaker.state


def test_check_fails_fast_without_taking_the_probe() -> None:
    """`check` raises while open and leaves the probe to `acquire` once the time is up."""
    breaker, clock, _ = make()
    fail(breaker, 3)
    with pytest.raises(CircuitOpen):
        breaker.check()
    clock.advance(2.0)
    breaker.check()
    assert breaker.acquire().probe


def test_a_released_probe_lets_the_next_caller_probe() -> None:
    """A cancelled probe frees its slot at once instead of after the probe timeout."""
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(2.0)
    breaker.release(breaker.acquire())
    assert breaker.acquire().probe
