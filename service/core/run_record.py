"""What a sync run changed in the mirror, and the record of a run that `runs` and `/status` show.

Every write of the mirror's repositories reports the rows it added, changed and removed (`Changes`); once
its transaction has committed, a sync run's writer adds them to the run's `MirrorCounts`, which the run
hands to what it calls (the flow refresh's run view, `FlowRefresh.counting`): a webhook refresh running
beside the run writes through the plain refresh and counts for no run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")


@dataclass(slots=True)
class Changes:
    """Rows of one entity a write (or a run) added, changed and removed."""

    added: int = 0
    changed: int = 0
    removed: int = 0

    def __add__(self, other: Changes) -> Changes:
        return Changes(self.added + other.added, self.changed + other.changed, self.removed + other.removed)

    @classmethod
    def between(cls, stored: Mapping[K, V], fetched: Mapping[K, V]) -> Changes:
        """What making `stored` exactly `fetched` does: keys new, values that differ, keys gone."""
        return cls(
            added=len(fetched.keys() - stored.keys()),
            changed=sum(1 for key, value in fetched.items() if key in stored and stored[key] != value),
            removed=len(stored.keys() - fetched.keys()),
        )


@dataclass(slots=True)
class MirrorCounts:
    """What a run (or one committed write) did to the mirror, per entity; `queued`: grade versions put in
    the outbox for the SIS."""

    flows: Changes = field(default_factory=Changes)
    participants: Changes = field(default_factory=Changes)
    grades: Changes = field(default_factory=Changes)
    queued: int = 0

    def add(self, other: MirrorCounts) -> None:
        """Count `other` into these counts."""
        self.flows += other.flows
        self.participants += other.participants
        self.grades += other.grades
        self.queued += other.queued

    def as_json(self) -> dict[str, dict[str, int]]:
        """`{"flows": {"added", "changed", "removed"}, "participants": ..., "grades": {..., "queued"}}`."""
        return {
            "flows": _changes(self.flows),
            "participants": _changes(self.participants),
            "grades": _changes(self.grades) | {"queued": self.queued},
        }


def _changes(changes: Changes) -> dict[str, int]:
    return {"added": changes.added, "changed": changes.changed, "removed": changes.removed}


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One sync run as recorded: `outcome` ok | failed | paused | interrupted | running."""

    id: int
    command: str | None  # run | sync | demo; None for a run recorded before commands were
    started_at: float
    finished_at: float | None  # None while running
    outcome: str
    requests: int  # counted on the wire: token requests and retries included
    counts: MirrorCounts
    error: str | None  # one line

    def as_json(self) -> dict[str, Any]:
        """The `runs --format json` element (also `/status`'s `last_run`): times ISO 8601 UTC."""
        return {
            "id": self.id,
            "command": self.command,
            "started_at": iso_time(self.started_at),
            "finished_at": None if self.finished_at is None else iso_time(self.finished_at),
            "outcome": self.outcome,
            "requests": self.requests,
            "counts": self.counts.as_json(),
            "error": self.error,
        }


def iso_time(at: float) -> str:
    """Unix seconds as ISO 8601 UTC to the millisecond (a short run still shows its length)."""
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds")


def one_line(text: str | None) -> str | None:
    """An error as one line: line breaks and runs of blanks become one space."""
    return None if text is None else " ".join(text.split())
