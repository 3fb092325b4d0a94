"""What the request journal says about waiting: was every `Retry-After` WISEflow gave honoured?

Pure arithmetic over journalled requests, oldest first. An answer was read at `sent + duration`; a
429 or 503 carrying `Retry-After` asked the client to send nothing before `read + retry_after`. It was
honoured when the first request sent after the answer was read left no earlier than that (or when none
followed). Requests sent before the answer was read were already in flight and do not count. A wait cut
short by `SYNC_PAUSE_MAX` is, truthfully, not honoured.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# The statuses whose Retry-After asks every caller to wait (a 429's rate pause, a 503's maintenance).
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
# Journal times are the wall clock at sending plus a measured duration, while the pause runs on the
# monotonic clock from the moment the answer was read; a millisecond absorbs the rounding between them.
TOLERANCE: Final = 0.001


@dataclass(frozen=True, slots=True)
class Exchange:
    """One journalled request: when it was sent (wall clock), how long its answer took, its status."""

    sent: float
    duration_ms: float
    status: int  # 0: no answer
    retry_after: float | None = None  # seconds the answer's Retry-After asked for

    @property
    def read(self) -> float:
        """When the answer had been read."""
        return self.sent + self.duration_ms / 1000


@dataclass(frozen=True, slots=True)
class PauseFigures:
    """The Retry-After answers seen, how many were honoured, and the shortest wait after any 429."""

    retry_after_answers: int = 0
    retry_after_honoured: int = 0
    shortest_wait_after_429: float | None = None  # None: no 429 was followed by a request


def pause_figures(exchanges: Sequence[Exchange]) -> PauseFigures:
    """The figures of `exchanges`, which must be ordered by `sent`."""
    sent = [e.sent for e in exchanges]
    answers = honoured = 0
    waits: list[float] = []
    for exchange in exchanges:
        following = bisect_left(sent, exchange.read)
        next_sent = sent[following] if following < len(sent) else None
        if exchange.status == 429 and next_sent is not None:
            waits.append(next_sent - exchange.read)
        if exchange.status in RETRY_AFTER_STATUSES and exchange.retry_after is not None:
            answers += 1
            ends = exchange.read + exchange.retry_after
            honoured += next_sent is None or next_sent >= ends - TOLERANCE
    return PauseFigures(answers, honoured, min(waits, default=None))
