"""Store ports: what the loops need from the database, as Protocols. `service/adapters/store/` implements them.

    SyncStore     the poller: one `transaction()` is a `SyncUnit` (flows and plans, participants, grades
                  with their outbox rows, checkpoints, runs), committed together or not at all
    InboxStore    the inbox worker: pending events, done / failed / deferred, the newest applied
    Markers       catch-up: time markers, the last webhook delivery, the flows that are not archived
    OutboxStore   the deliverer: due rows, delivered / failed / refused / dead, when the next one falls due
    Checkpoints   small named values that outlive the process (a pause WISEflow asked for)

No SQL string and no connection crosses these ports; tests can run the loops against fakes of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from service.core.blindness import MirroredFlow
from service.core.planner import FlowPlan
from service.core.records import Flow, GradeVersion, Participant


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One stored webhook event, without its body."""

    sequence: int
    event: str
    flow_id: int | None
    participant_id: int | None
    event_timestamp: int
    received_at: float
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    processed_at: float | None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One outbox row waiting for delivery."""

    id: int
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int
    refusals: int = 0  # 4xx answers to it (the SIS refused the record), apart from the SIS being unwell


@dataclass(slots=True)
class RunCounters:
    """What a run has done so far; written to `sync_runs` as it goes and at its end."""

    api_calls: int = 0
    pages: int = 0
    records: int = 0
    changes: int = 0


class SyncUnit(Protocol):
    """What one transaction of a sync run can read and write; it commits as a whole."""

    async def load_flows(self, flow_ids: Iterable[int]) -> dict[int, tuple[Flow, FlowPlan]]: ...
    async def load_flow(self, flow_id: int) -> tuple[Flow, FlowPlan] | None: ...
    async def save_flow(self, flow: Flow, now: float, seen_at: float | None = None) -> None: ...
    async def save_plan(self, flow_id: int, plan: FlowPlan) -> None: ...
    async def save_plans(self, plans: Mapping[int, FlowPlan]) -> None: ...
    async def all_flows(self) -> list[tuple[Flow, FlowPlan]]: ...
    async def vanished_flows(self, pass_started: float) -> list[int]: ...
    async def delete_flow(self, flow_id: int) -> None: ...
    async def record_flow_error(self, flow_id: int, error: str) -> None: ...
    async def replace_participants(
        self, flow_id: int, participants: Sequence[Participant], now: float
    ) -> None: ...
    async def stored_grade_keys(self, flow_id: int) -> dict[int, str]: ...
    async def write_grades(self, versions: Sequence[GradeVersion], now: float) -> None: ...
    async def remove_grades_except(self, flow_id: int, participant_ids: Iterable[int]) -> None: ...
    async def enqueue_outbox(self, versions: Sequence[GradeVersion], now: float) -> int: ...
    async def get_checkpoint(self, key: str) -> Any: ...
    async def set_checkpoint(self, key: str, value: Any, now: float) -> None: ...
    async def delete_checkpoint(self, key: str) -> None: ...
    async def abandon_running(self, now: float) -> int: ...
    async def start_run(self, now: float) -> int: ...
    async def finish_run(
        self, run_id: int, now: float, outcome: str, counters: RunCounters, reason: str | None
    ) -> None: ...
    async def record_requests(self, run_id: int, by_route: dict[str, int]) -> None: ...


class SyncStore(Protocol):
    """The poller's store: transactions of `SyncUnit`, and a lock shared by every process on the database."""

    def transaction(self) -> AbstractAsyncContextManager[SyncUnit]: ...
    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]: ...


class Checkpoints(Protocol):
    """Named JSON values that outlive the process."""

    async def get(self, key: str) -> Any: ...
    async def put(self, key: str, value: Any, now: float) -> None: ...


class InboxStore(Protocol):
    """The inbox worker's view of the stored webhook events."""

    async def pending(self, limit: int = 500) -> list[InboxRow]: ...
    async def newest_done(self, flow_id: int, events: Sequence[str]) -> int | None: ...
    async def mark_done(self, sequences: Sequence[int], now: float) -> None: ...
    async def mark_covered(
        self, covers: Sequence[tuple[int, Sequence[str], float]], now: float
    ) -> list[float]: ...
    async def mark_failed(
        self, sequences: Sequence[int], error: str, next_attempt_at: float, max_attempts: int
    ) -> list[int]: ...
    async def defer(self, sequences: Sequence[int], until: float) -> None: ...


class Markers(Protocol):
    """Catch-up's view: time markers of the webhook side, the last delivery, the flows to look at."""

    async def get_marker(self, name: str) -> float | None: ...
    async def set_marker(self, name: str, at: float) -> None: ...
    async def last_delivery_at(self) -> float | None: ...
    async def live_flows(self) -> list[MirroredFlow]: ...


class OutboxStore(Protocol):
    """The deliverer's view of the outbox."""

    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]: ...
    async def due_items(self, now: float, limit: int = 100) -> list[OutboxItem]: ...
    async def mark_delivered(self, item_id: int, now: float) -> None: ...
    async def mark_failed(self, item_id: int, next_attempt_at: float, error: str) -> None: ...
    async def mark_refused(self, item_id: int, next_attempt_at: float, error: str) -> None: ...
    async def mark_dead(self, item_id: int, error: str) -> None: ...
    async def next_due_at(self) -> float | None: ...
