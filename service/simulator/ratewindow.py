"""Rate-window arithmetic of the simulator: WISEflow's per-second and per-minute limits per credential.

Pure: the current time is a parameter (monotonic seconds). Each window is a fixed window that opens at
the first request after the previous one closed, so a burst that fits in one second is always judged by
one window, whatever the wall clock's second boundaries. A refused request does not count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A limit of `limit` requests per `length` seconds."""

    limit: int
    length: float


@dataclass(frozen=True, slots=True)
class WindowState:
    """One open window: when it opened and how many requests it admitted."""

    start: float
    count: int


@dataclass(frozen=True, slots=True)
class WindowStatus:
    """What the headers say about one window after a request."""

    limit: int
    remaining: int
    reset: int  # whole seconds until the window closes, at least 1


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one request: admitted or not, both windows, and the wait when refused."""

    allowed: bool
    second: WindowStatus
    minute: WindowStatus
    retry_after: int  # 0 when allowed

    @property
    def binding(self) -> WindowStatus:
        """The window nearest exhaustion: the one the generic `RateLimit-*` headers describe."""
        return self.minute if self.minute.remaining < self.second.remaining else self.second


def open_window(state: WindowState | None, spec: WindowSpec, now: float) -> WindowState:
    """The window in force at `now`: `state` while it lasts, else a new empty one opening now."""
    if state is None or now >= state.start + spec.length:
        return WindowState(start=now, count=0)
    return state


def reset_after(state: WindowState, spec: WindowSpec, now: float) -> int:
    """Whole seconds until `state` closes, rounded up and never below 1 (a client must wait at least 1 s)."""
    return max(1, math.ceil(state.start + spec.length - now))


def status(state: WindowState, spec: WindowSpec, now: float) -> WindowStatus:
    """The header view of one window."""
    return WindowStatus(spec.limit, max(0, spec.limit - state.count), reset_after(state, spec, now))


def judge(
    second: WindowState | None,
    minute: WindowState | None,
    specs: tuple[WindowSpec, WindowSpec],
    now: float,
) -> tuple[WindowState, WindowState, Verdict]:
    """Admit or refuse one request against both windows; returns the new windows and the verdict."""
    s_spec, m_spec = specs
    s, m = open_window(second, s_spec, now), open_window(minute, m_spec, now)
    full = [(st, sp) for st, sp in ((s, s_spec), (m, m_spec)) if st.count >= sp.limit]
    if full:
        wait = max(reset_after(st, sp, now) for st, sp in full)
        return s, m, Verdict(False, status(s, s_spec, now), status(m, m_spec, now), wait)
    s, m = WindowState(s.start, s.count + 1), WindowState(m.start, m.count + 1)
    return s, m, Verdict(True, status(s, s_spec, now), status(m, m_spec, now), 0)


class RateWindows:
    """The windows of every credential; the caller passes the time."""

    def __init__(self, per_second: int, per_minute: int) -> None:
        self._specs = (WindowSpec(per_second, 1.0), WindowSpec(per_minute, 60.0))
        self._windows: dict[str, tuple[WindowState, WindowState]] = {}

    def limit(self, per_second: int, per_minute: int) -> None:
        """Change the limits (a scenario); open windows keep their counts and are judged by the new ones."""
        self._specs = (WindowSpec(per_second, 1.0), WindowSpec(per_minute, 60.0))

    def admit(self, credential: str, now: float) -> Verdict:
        """Count one request of `credential` at `now` unless a window is full."""
        second, minute = self._windows.get(credential, (None, None))
        s, m, verdict = judge(second, minute, self._specs, now)
        self._windows[credential] = (s, m)
        return verdict
