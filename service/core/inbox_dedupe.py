"""When a webhook delivery is a duplicate: what WISEflow promises, and nothing more.

WISEflow promises that a sequence number is unique per event and that every delivery call has its own id
(docs/wiseflow.md). So a redelivery of an event carries the same sequence and the same body apart from its
own `id` (and perhaps its `timestamp`), while a different event under a stored sequence (a sender that
numbers from 1 again, a recreated subscription, a bug) must never be taken for a duplicate and dropped.

An arrival is a *duplicate* when an event with the same identity, (sequence, event, flowId, participantId),
arrived less than `REDELIVERY_WINDOW` before it: the same event delivered again. Anything else is stored
as a new event; when its sequence is already stored under another identity, or under the same identity
longer ago than any redelivery comes, it is *reused*, which the receiver reports. A false "new" costs one
refresh more (a refresh fetches current state, so applying an event twice changes nothing); a false
"duplicate" would lose a change until the next poll, so every doubt falls on the side of "new".
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

# WISEflow retries a failed delivery 8 times, 15 minutes apart: its last redelivery of an event comes two
# hours after the first; an hour more covers a slow delivery queue. A copy arriving later is processed as a
# new event (one refresh more); an event reusing a sequence and an identity within it is absorbed.
REDELIVERY_WINDOW: Final = 3 * 3600.0

# (sequence, event, flowId, participantId): what a body says apart from its delivery's own id and time.
Identity = tuple[int, str, int | None, int | None]


class Arrival(enum.Enum):
    """What one delivery is, against the stored events and the deliveries before it."""

    NEW = "new"
    DUPLICATE = "duplicate"
    REUSED = "reused"  # new, although its sequence already names a stored event: reported


@dataclass(frozen=True, slots=True)
class Stored:
    """An event already stored: its id, its identity, and when it arrived."""

    event_id: int
    identity: Identity
    received_at: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """One delivery's verdict and the id of the event it is: a new id, or the stored copy's."""

    arrival: Arrival
    event_id: int

    @property
    def stored(self) -> bool:
        """True when the delivery becomes a new row (new or reused)."""
        return self.arrival is not Arrival.DUPLICATE


def judge(stored: Iterable[Stored], arrivals: Sequence[tuple[Identity, float]], next_id: int) -> list[Verdict]:
    """The verdict on each (identity, received_at) in order; new events take ids from `next_id` on.

    `stored` holds at least every stored event sharing a sequence with an arrival. An arrival is judged
    against those and the arrivals before it (a second copy in the same batch is a duplicate).
    """
    latest: dict[Identity, Stored] = {}
    sequences: set[int] = set()
    for event in stored:
        sequences.add(event.identity[0])
        known = latest.get(event.identity)
        if known is None or event.received_at > known.received_at:
            latest[event.identity] = event
    verdicts: list[Verdict] = []
    for identity, received_at in arrivals:
        copy = latest.get(identity)
        if copy is not None and received_at - copy.received_at < REDELIVERY_WINDOW:
            verdicts.append(Verdict(Arrival.DUPLICATE, copy.event_id))
            continue
        arrival = Arrival.REUSED if identity[0] in sequences else Arrival.NEW
        latest[identity] = Stored(next_id, identity, received_at)
        sequences.add(identity[0])
        verdicts.append(Verdict(arrival, next_id))
        next_id += 1
    return verdicts
