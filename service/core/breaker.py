"""The circuit breaker for WISEflow maintenance windows: a small state machine driven by a `Clock`.

The outbox deliverer keeps one for the SIS too (`sync/outbox.py`): there one failure opens it, and its
probe is one grade delivery.

    CLOSED --(N consecutive failures | 503 with Retry-After)--> OPEN
    OPEN   --(open time elapsed; the next caller becomes the probe)--> HALF_OPEN
    HALF_OPEN --(probe succeeded)--> CLOSED
    HALF_OPEN --(probe failed)--> OPEN   (for the Retry-After, bounded, or a longer backoff than last time)

While OPEN, and while the one HALF_OPEN probe is in flight, `acquire` raises `CircuitOpen` without any
I/O: no request leaves the process. Failures are what say "the server is not there": 5xx other than 501,
timeouts, refused connections. A 4xx or a 429 proves the server is up (429 is the limiter's business),
so the adapter reports those as successes. Every transition is handed once to `on_transition`, with its
reason, so the adapter logs it exactly once.

Two schedules decide how long OPEN lasts. The server's: a Retry-After is honoured up to `pause_max`
(`SYNC_PAUSE_MAX`, the same bound a 429's pause has). Ours: without one, a backoff doubling with each
consecutive opening of our own, up to `open_cap`. An opening the server timed resets our count, so the
first failure after a maintenance window (a 502 on the probe, say) backs off from `open_base` again
instead of from the exponent the maintenance's own openings had built up.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from service.core.backoff import backoff_ceiling
from service.core.clock import Clock
from service.core.retry_after import bounded_pause
from service.errors import CircuitOpen


class State(enum.Enum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# The only moves the machine may make; tests check every reported transition against this set.
LEGAL_TRANSITIONS = frozenset(
    {(State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN), (State.HALF_OPEN, State.CLOSED)}
    | {(State.HALF_OPEN, State.OPEN)}
)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When to open and for how long."""

    failure_threshold: int = 5
    open_base: float = 5.0  # first opening without Retry-After; doubles with each failed probe
    open_cap: float = 300.0  # the longest our own backoff keeps it open (no Retry-After given)
    pause_max: float = 3600.0  # the longest Retry-After honoured (SYNC_PAUSE_MAX); beyond it, this
    # A probe that neither succeeds nor fails within this time (cancelled, lost) frees the slot.
    probe_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.open_base <= 0 or self.open_cap < self.open_base:
            raise ValueError("BreakerPolicy needs failure_threshold >= 1 and 0 < open_base <= open_cap")
        if self.pause_max < 0:
            raise ValueError("BreakerPolicy.pause_max must not be negative")

    def open_duration(self, openings: int, retry_after: float | None) -> float:
        """The server's Retry-After (up to `pause_max`) if it gave one, else our doubling backoff."""
        if retry_after is not None:
            return bounded_pause(retry_after, self.pause_max)
        return backoff_ceiling(openings, base=self.open_base, cap=self.open_cap)


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of state, for the log: `retry_after` is how long OPEN will last (0 otherwise)."""

    name: str
    source: State
    target: State
    reason: str
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to send one request; `probe` is True for the single HALF_OPEN trial request."""

    probe: bool
    generation: int


class Breaker:
    """One breaker per API base URL (`name`), shared by every caller of the process."""

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        clock: Clock,
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        self.name = name
        self._policy = policy
        self._clock = clock
        self._on_transition = on_transition
        self._state = State.CLOSED
        self._failures = 0  # consecutive, while CLOSED
        # Consecutive openings of our own (no Retry-After), without a success in between: the backoff exponent.
        self._openings = 0
        self._open_until = 0.0
        self._probe_started = 0.0
        self._reason = ""
        self._generation = 0  # bumps on every transition, so a stale permit cannot close a newer state
        self._server_timed = False  # the current opening is a Retry-After's (saved, so an operator may lift it)

    @property
    def state(self) -> State:
        """The current state (OPEN stays OPEN until a caller asks after the open time)."""
        return self._state

    def retry_after(self) -> float:
        """Seconds until a request may be tried again (0 when CLOSED)."""
        now = self._clock.monotonic()
        if self._state is State.OPEN:
            return max(self._open_until - now, 0.0)
        if self._state is State.HALF_OPEN:
            return max(self._probe_started + self._policy.probe_timeout - now, 0.0)
        return 0.0

    def check(self) -> None:
        """Raise `CircuitOpen` if `acquire` would, without taking a permit (before waiting for a slot)."""
        now = self._clock.monotonic()
        if self._state is State.OPEN and now < self._open_until:
            raise CircuitOpen(self.name, self._open_until - now, self._reason)
        if self._state is State.HALF_OPEN and now < self._probe_started + self._policy.probe_timeout:
            raise CircuitOpen(self.name, self.retry_after(), self._reason)

    def acquire(self) -> Permit:
        """A permit to send one request, or `CircuitOpen` at once; after the open time, one probe."""
        now = self._clock.monotonic()
        if self._state is State.OPEN and now >= self._open_until:
            self._move(State.HALF_OPEN, "open time elapsed: one probe allowed")
            self._probe_started = now
            return Permit(probe=True, generation=self._generation)
        if self._state is State.HALF_OPEN and now >= self._probe_started + self._policy.probe_timeout:
            # The previous probe never reported (cancelled or hung): this caller takes its place.
            self._probe_started = now
            return Permit(probe=True, generation=self._generation)
        if self._state is not State.CLOSED:
            raise CircuitOpen(self.name, self.retry_after(), self._reason)
        return Permit(probe=False, generation=self._generation)

    def record_success(self, permit: Permit) -> None:
        """The server answered (2xx-4xx, 429 included): a probe closes the circuit, failures reset."""
        if self._state is State.HALF_OPEN and permit.probe and permit.generation == self._generation:
            self._openings = 0
            self._failures = 0
            self._move(State.CLOSED, "probe succeeded")
        elif self._state is State.CLOSED:
            self._failures = 0

    def record_failure(self, permit: Permit, reason: str, retry_after: float | None = None) -> None:
        """A 5xx (not 501), timeout or refused connection; `retry_after` set for a 503 that carried one."""
        if self._state is State.HALF_OPEN and permit.probe and permit.generation == self._generation:
            self._open(f"probe failed: {reason}", retry_after)
        elif self._state is State.CLOSED:
            self._failures += 1
            if retry_after is not None:
                self._open(f"{reason} with Retry-After", retry_after)
            elif self._failures >= self._policy.failure_threshold:
                self._open(f"{self._failures} consecutive failures, last: {reason}", None)

    def release(self, permit: Permit) -> None:
        """The request ended without an answer (cancelled): a probe's slot goes to the next caller."""
        if self._state is State.HALF_OPEN and permit.probe and permit.generation == self._generation:
            self._probe_started = float("-inf")

    def lift(self) -> bool:
        """An operator cleared the saved pause: an opening a Retry-After timed ends now (next caller probes).

        An opening of our own backoff is not a saved pause and stays. True when an opening was cut short.
        """
        now = self._clock.monotonic()
        if self._state is not State.OPEN or not self._server_timed or self._open_until <= now:
            return False
        self._open_until = now
        return True

    def _open(self, reason: str, retry_after: float | None) -> None:
        # The server's schedule replaces ours: its openings do not grow the next backoff.
        self._openings = 0 if retry_after is not None else self._openings + 1
        self._server_timed = retry_after is not None
        duration = self._policy.open_duration(self._openings, retry_after)
        self._open_until = self._clock.monotonic() + duration
        self._failures = 0
        self._move(State.OPEN, reason, duration)

    def _move(self, target: State, reason: str, retry_after: float = 0.0) -> None:
        source, self._state, self._reason = self._state, target, reason
        self._generation += 1
        if self._on_transition is not None:
            self._on_transition(Transition(self.name, source, target, reason, retry_after))
