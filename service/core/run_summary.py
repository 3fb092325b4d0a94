"""What a sync run reports: its summary (also stored in `sync_runs`) and its progress events."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from service.core.run_record import MirrorCounts


@dataclass(slots=True)
class RunSummary:
    """What one run did; `outcome` is ok, paused (WISEflow asked for a pause: resumable), failed, or
    interrupted (cancelled mid-run: the process is stopping)."""

    run_id: int
    outcome: str
    reason: str | None = None
    retry_after: float | None = None
    api_calls: int = 0
    pages: int = 0
    records: int = 0  # items read from WISEflow: flows listed, participants, grades
    changes: int = 0
    flows_listed: int = 0
    flows_refreshed: int = 0
    events: int | None = None
    duration: float = 0.0
    # How many refreshed flows had each number of participants: a few sizes, not one entry per flow.
    refreshed_participants: Counter[int] = field(default_factory=Counter)
    counts: MirrorCounts = field(default_factory=MirrorCounts)  # what its committed writes did to the mirror


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress report: `phase` and, when known, how many of `total` items are done."""

    phase: str
    done: int
    total: int | None
