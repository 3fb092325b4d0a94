"""`wiseflow-sync inbox dead-letters` and `inbox replay ID|--all`: webhook events that failed for good.

The listing and the replay are the outbox's too (`commands/dead_letters.py`); an event's ID is its own id
in the inbox, as the listing shows it (not WISEflow's sequence, which another event may reuse). The
running service's inbox worker processes a replayed event on its next pass.
"""

from __future__ import annotations

from typing import Final

from service.commands import dead_letters

QUEUE: Final = dead_letters.Queue(
    name="inbox",
    items="webhook events",
    item="event",
    requeued="event(s); the service's inbox worker will process them",
    repository=lambda unit: unit.inbox,
)
# The command's `register(subparsers)`, as every command module has one.
register: Final = QUEUE.register
