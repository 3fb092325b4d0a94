"""`wiseflow-sync outbox dead-letters` and `outbox replay ID|--all`: grade deliveries the SIS refused for good.

The listing and the replay are the inbox's too (`commands/dead_letters.py`); a grade's ID is its outbox
row's. The running service's deliverer (or the next `sync --once`) sends a replayed grade, unless a newer
grade of the same participant is queued or delivered: that row stays dead, and the replay says so.
"""

from __future__ import annotations

from typing import Final

from service.commands import dead_letters

QUEUE: Final = dead_letters.Queue(
    name="outbox",
    items="grade deliveries",
    item="row",
    requeued="grade delivery(ies); the deliverer sends them next",
    repository=lambda unit: unit.outbox,
)
# The command's `register(subparsers)`, as every command module has one.
register: Final = QUEUE.register
