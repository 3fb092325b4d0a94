"""The saved pause: a Retry-After or maintenance window WISEflow announced outlives the process.

`PauseKeeper` is the breaker's transition hook (it logs each transition and remembers how long WISEflow
asked us to stay away), folds in a 429's pause from the shared limiter when saved, and at startup tells
the composition root what is left of a pause a previous process was given.
"""

from __future__ import annotations

import logging
from typing import Final

from service.adapters.wiseflow.client import log_transition
from service.core.breaker import State as BreakerState
from service.core.breaker import Transition
from service.core.clock import Clock
from service.core.store_ports import Checkpoints

NOT_BEFORE_KEY: Final = "wiseflow:not_before"
log = logging.getLogger("service.runtime")


class PauseKeeper:
    """The wall-clock time before which WISEflow asked not to be called, kept in a checkpoint."""

    def __init__(self, clock: Clock, checkpoints: Checkpoints) -> None:
        self._clock = clock
        self._checkpoints = checkpoints
        self.not_before = 0.0
        self.not_before_saved = 0.0

    def note_transition(self, transition: Transition) -> None:
        """The breaker's hook: log it, and remember how long WISEflow asked us to stay away."""
        log_transition(transition)
        if transition.target is BreakerState.OPEN and transition.retry_after > 0:
            self.not_before = max(self.not_before, self._clock.wall() + transition.retry_after)

    async def save(self, paused_for: float) -> None:
        """Persist `not_before` when it moved (the journal loop and shutdown call this).

        `paused_for`: what is left of a 429's pause, which lives in the shared limiter rather than the breaker.
        """
        if paused_for > 0:
            self.not_before = max(self.not_before, self._clock.wall() + paused_for)
        if self.not_before > self.not_before_saved:
            await self._checkpoints.put(NOT_BEFORE_KEY, self.not_before, self._clock.wall())
            self.not_before_saved = self.not_before

    async def restore(self) -> float:
        """At startup: what is left of a Retry-After a previous process was given (the caller pauses for it)."""
        saved = await self._checkpoints.get(NOT_BEFORE_KEY)
        remaining = float(saved) - self._clock.wall() if isinstance(saved, int | float) else 0.0
        if remaining > 0:
            self.not_before = self.not_before_saved = float(saved)
            log.warning(
                "WISEflow asked a previous process to wait: pausing",
                extra={"event": "wiseflow.pause_restored", "retry_after": round(remaining, 3)},
            )
        return max(0.0, remaining)
