"""The wake-ups between the service's parts: one object, built by the composition root, handed to each side.

    stored()        the receiver committed a webhook event           -> the inbox worker looks now
    queued(rows)    a refresh or a sync run put grades in the outbox  -> the deliverer looks now
    pause_lifted()  an operator cleared WISEflow's pause             -> the inbox worker looks now (the
                                                                        events it deferred behind the pause)

Each sets the event the waiting loop watches (`inbox`, `outbox`); a loop that is busy finds it set when it
next waits, so a signal is never lost, only merged with the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Signals:
    """The wake events of the inbox worker and the outbox deliverer, and the signals that set them."""

    def __init__(self) -> None:
        self.inbox = asyncio.Event()  # the inbox worker waits on it
        self.outbox = asyncio.Event()  # the outbox deliverer waits on it
        # The inbox worker's two reasons to look now, each the event's own `set`, with nothing in between:
        self.stored: Callable[[], None] = self.inbox.set  # a webhook event was committed to the inbox
        # An operator cleared the pause WISEflow asked for: the events deferred behind it can go.
        self.pause_lifted: Callable[[], None] = self.inbox.set

    def queued(self, rows: int) -> None:
        """`rows` grade versions entered the outbox (nothing to do for 0)."""
        if rows > 0:
            self.outbox.set()
