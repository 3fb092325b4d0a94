"""The rate budget's admission arithmetic: when may the next request leave the process?

Two parts compose the limiter. The token bucket is aiolimiter's `AsyncLimiter(burst, burst * interval)`
(GCRA with a small burst, on the event loop's clock), in `service/adapters/wiseflow/limiter.py`. A bucket
alone is not enough for WISEflow, which counts sliding windows (200 per second, 5000 per minute): a full
bucket followed by its refill lets a window that starts just before the burst see more than the budget,
and that is a 429. So the rules that keep the budget strict live here, pure, driven by a `Clock` and
proven by a Hypothesis test on a `ManualClock`; the adapter asks `try_acquire` after the bucket and
sleeps for the time it returns. Three rules decide, and the latest of their times wins:

1. The bound. One log per window of the last `budget` admission times: a request is admitted only when
   the oldest of them is at least `period + guard` old. So no window of length `period` (not even one of
   `period + guard`) ever holds more than `budget` admissions, whatever the callers do. The guard keeps
   the bound at the server too, where requests arrive with a few milliseconds of jitter.
2. Pauses. A 429's Retry-After (or RateLimit-Reset) sets a "paused until" deadline that stops every
   caller. When it ends, one request goes first and the others wait until its answer is in (`settle`,
   or `settle_timeout`): if the server still says 429, nobody else has been sent into it.
3. Server quotas. The server's own `RateLimit-Remaining` counts are spent down (keeping `reserve` for
   requests already in flight) so we stop before the server has to say 429 -- when another consumer of
   the same credentials has used the server's window up, say. Only windows that reset in `horizon`
   seconds or more are paced this way: Reset is in whole seconds, too coarse for a one-second window
   (stopping a full second whenever the server's second fills would halve the throughput), and rule 1
   already keeps our own traffic within any one-second window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from service.core.clock import Clock
from service.core.retry_after import Quota


@dataclass(frozen=True, slots=True)
class RateBudget:
    """Requests allowed per sliding second and per sliding minute, for the whole process."""

    per_second: int
    per_minute: int
    guard: float = 0.01  # seconds added to each window for arrival jitter: costs 1% of a 1 s budget
    burst: int = 2  # admissions that may follow each other without spacing (the token bucket's size)
    reserve: int = 1  # server-reported remaining requests we leave for those already in flight
    horizon: float = 2.0  # server windows resetting sooner are left to rule 1 (see the module docstring)
    settle_timeout: float = 10.0  # the longest the first request after a pause holds the others back

    def __post_init__(self) -> None:
        if self.per_second < 1 or self.per_minute < 1 or self.burst < 1:
            raise ValueError("RateBudget needs per_second, per_minute and burst >= 1")
        if self.guard < 0 or self.reserve < 0:
            raise ValueError("RateBudget.guard and reserve must not be negative")

    @property
    def windows(self) -> tuple[tuple[float, int], ...]:
        """(period in seconds, budget) of each sliding window enforced."""
        return ((1.0, self.per_second), (60.0, self.per_minute))

    @property
    def interval(self) -> float:
        """The token bucket's spacing between admissions at full speed (1% guard on each window)."""
        return max((1.0 + self.guard) / self.per_second, (60.0 + self.guard) / self.per_minute)


@dataclass(slots=True)
class _Allowance:
    until: float
    left: int


@dataclass(slots=True)
class _Window:
    period: float
    budget: int
    log: deque[float] = field(default_factory=deque)

    def earliest(self, guard: float) -> float:
        """When this window admits again: once its oldest of `budget` admissions has aged out."""
        if len(self.log) < self.budget:
            return float("-inf")
        return self.log[0] + self.period + guard

    def record(self, now: float) -> None:
        self.log.append(now)
        if len(self.log) > self.budget:
            self.log.popleft()


class RateGate:
    """One per process: decides admissions for every caller against a `RateBudget`."""

    def __init__(self, budget: RateBudget, clock: Clock) -> None:
        self.budget = budget
        self.clock = clock  # its monotonic time is what `earliest` and the pause are measured on
        self._windows = [_Window(period, size) for period, size in budget.windows]
        self._paused_until = float("-inf")
        self._allowances: dict[str, _Allowance] = {}
        self._after_pause = False  # the next admission is the first after a pause: it goes alone
        self._probe_until = float("-inf")

    @property
    def probing(self) -> bool:
        """True while the first request after a pause is out and the others wait for its answer."""
        return self.clock.monotonic() < self._probe_until

    def earliest(self, urgent: bool = False) -> float:
        """The monotonic time at which the next request may be admitted (may be in the past).

        `urgent` (a token renewal) does not wait behind the first request after a pause; every bound holds.
        """
        times = [self._paused_until]
        if not urgent:
            times.append(self._probe_until)
        times.extend(w.earliest(self.budget.guard) for w in self._windows)
        now = self.clock.monotonic()
        times.extend(a.until for a in self._allowances.values() if a.left <= 0 and a.until > now)
        return max(times)

    def try_acquire(self, urgent: bool = False) -> float:
        """Admit one request now and return 0.0, or admit nothing and return the seconds to wait."""
        now = self.clock.monotonic()
        wait = self.earliest(urgent) - now
        if wait > 0:
            return wait
        for window in self._windows:
            window.record(now)
        if self._after_pause:
            self._after_pause = False
            self._probe_until = now + self.budget.settle_timeout
        for name, allowance in list(self._allowances.items()):
            if allowance.until <= now:
                del self._allowances[name]
            else:
                allowance.left -= 1
        return 0.0

    def pause(self, seconds: float) -> None:
        """Admit nothing for `seconds` from now (a 429's Retry-After); pauses only ever extend."""
        self._paused_until = max(self._paused_until, self.clock.monotonic() + max(seconds, 0.0))
        self._after_pause = True
        self._probe_until = float("-inf")

    def lift(self) -> None:
        """End the pause now (an operator cleared it); the next admission goes alone, as after any pause."""
        self._paused_until = float("-inf")

    def settle(self) -> None:
        """An answer came in: the first request after a pause no longer holds the others back."""
        self._probe_until = float("-inf")

    def pause_remaining(self) -> float:
        """Seconds left of the shared pause (0.0 when none)."""
        return max(self._paused_until - self.clock.monotonic(), 0.0)

    def observe(self, quotas: Iterable[Quota]) -> None:
        """Spend down the server's reported remaining requests until their reset, keeping `reserve`."""
        now = self.clock.monotonic()
        for quota in quotas:
            if quota.reset < self.budget.horizon:
                continue
            left = quota.remaining - self.budget.reserve
            self._allowances[quota.scope] = _Allowance(until=now + quota.reset, left=left)
