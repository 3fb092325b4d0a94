"""Store ports: the unit of work and its repositories, as Protocols (cosmicpython's `uow.products`).

    async with uow.transaction() as unit:      # one BEGIN IMMEDIATE ... COMMIT; any exception rolls it back
        known = await unit.flows.get(flow_id)
        await unit.grades.write(changed, now)
        queued = await unit.outbox.enqueue(changed, now)  # commits with the grades, or neither does
    async with uow.read() as unit:             # committed rows only, read beside the writer
        rows = await unit.inbox.pending(now)

    unit.flows        flows with their polling plans, and the guards a refresh commits under
    unit.grades       the mirror's participants and current grade versions
    unit.outbox       grade versions (and withdrawals) for the SIS: enqueued with the grades, then due,
                      delivered, failed, refused or dead (one door in and out)
    unit.inbox        the webhook events the receiver committed, as the worker's queue
    unit.checkpoints  JSON values by key: the discovery pass, the events cursor, catch-up's markers
    unit.runs         sync runs: what each did (requests, the mirror's counts), newest first for `runs`

`service/adapters/store/unit.py` implements them on SQLite; `tests/fake_unit.py` (`FakeUnitOfWork`) in
memory, for the loops' unit tests. No SQL string and no connection crosses these ports; a database
failure comes out as `service.errors.StoreError`. The client's saved pause has its own port,
`service.core.ports.PauseStore`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.core.blindness import MirroredFlow
from service.core.planner import DueKey, FlowPlan
from service.core.records import Flow, GradeVersion, Participant
from service.core.run_record import Changes, MirrorCounts, RunRecord

# What a flow repository returns for a stored flow: the flow and its polling plan.
StoredFlow = tuple[Flow, FlowPlan]
# One refresh for `InboxRepository.record_refreshes`: (flow id, event names it answers, when it began).
Cover = tuple[int, Sequence[str], float]


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One stored webhook event, without its body; `id` is its own (arrival order), `sequence` WISEflow's."""

    id: int
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
    receipt: str | None = None  # the W3C traceparent of the request that received it, when it was traced


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
    mirror: MirrorCounts = field(default_factory=MirrorCounts)  # rows added, changed, removed per entity


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An item that failed for good (a webhook event, or a grade delivery), without its body or grade."""

    id: int  # what `replay ID` takes: the inbox event's id, or the outbox row's id
    item: str  # the event's name (FINAL_GRADE), or "grade"
    flow_id: int | None
    participant_id: int | None
    attempts: int
    last_error: str | None
    since: float  # when it was received (an event) or queued (a grade)


@dataclass(frozen=True, slots=True)
class Replay:
    """What a replay did: rows re-queued, dead rows left because a newer one supersedes them, and the
    named row's status before (None: no such row; "dead" when every dead row was asked for)."""

    requeued: int
    superseded: int
    status: str | None


class DeadLetters(Protocol):
    """A queue's items that failed for good, and the one way back (`inbox` and `outbox` alike)."""

    async def dead_letters(self, limit: int = 1000) -> list[DeadLetter]: ...
    async def replay(self, item_id: int | None) -> Replay: ...


class FlowRepository(Protocol):
    """Flows and their plans. `clock` and the refresh version keep the mirror from moving backwards.

    A write reports what it did to the mirror; None when its guard refused it (a later fetch committed).
    """

    async def get(self, flow_id: int) -> StoredFlow | None: ...
    async def get_many(self, flow_ids: Iterable[int]) -> dict[int, StoredFlow]: ...
    async def page(self, after: int, limit: int) -> list[StoredFlow]: ...
    async def due(self, now: float, after: DueKey | None, limit: int) -> list[StoredFlow]: ...
    async def count_due(self, now: float) -> int: ...
    async def live(self) -> list[MirroredFlow]: ...
    async def vanished(self, pass_started: float) -> list[int]: ...
    async def save(
        self, flow: Flow, now: float, *, clock: int | None = None, seen_at: float | None = None
    ) -> Changes | None: ...
    async def save_many(
        self, flows: Sequence[Flow], now: float, *, clock: int | None = None, seen_at: float | None = None
    ) -> list[Changes | None]: ...
    async def save_plans(self, plans: Mapping[int, FlowPlan]) -> None: ...
    async def record_error(self, flow_id: int, error: str) -> None: ...
    async def delete(self, flow_id: int, clock: int) -> MirrorCounts | None: ...
    async def state_clock(self) -> int: ...
    async def refresh_version(self, flow_id: int) -> int: ...
    async def claim_refresh(self, flow_id: int, version: int) -> bool: ...


class GradeRepository(Protocol):
    """The mirror's participants and current grade versions; each write reports the rows it changed."""

    async def replace_participants(
        self, flow_id: int, participants: Sequence[Participant], now: float
    ) -> Changes: ...
    async def keys(self, flow_id: int) -> dict[int, str]: ...
    async def write(self, versions: Sequence[GradeVersion], now: float) -> Changes: ...
    async def remove_except(self, flow_id: int, participant_ids: Iterable[int]) -> Changes: ...
    def stream(self) -> AsyncGenerator[GradeVersion, None]: ...


class OutboxRepository(DeadLetters, Protocol):
    """Grade versions on their way to the SIS, from `enqueue` to delivered or dead."""

    async def enqueue(self, versions: Sequence[GradeVersion], now: float) -> int: ...
    async def due(self, now: float, limit: int = 100) -> list[OutboxItem]: ...
    async def next_due_at(self) -> float | None: ...
    async def mark_delivered(self, item_id: int, now: float) -> None: ...
    async def mark_failed(self, item_id: int, next_attempt_at: float, error: str) -> None: ...
    async def mark_refused(self, item_id: int, next_attempt_at: float, error: str) -> None: ...
    async def mark_dead(self, item_id: int, error: str) -> None: ...
    async def counts(self) -> dict[str, int]: ...
    async def withdrawals(self) -> int: ...


class InboxRepository(DeadLetters, Protocol):
    """The stored webhook events as the inbox worker's queue (the receiver commits them apart)."""

    async def pending(self, now: float, limit: int = 500) -> list[InboxRow]: ...
    async def next_retry_at(self, after: float) -> float | None: ...
    async def refreshed_at(self, flow_id: int, events: Sequence[str]) -> float | None: ...
    async def mark_done(self, event_ids: Sequence[int], now: float) -> None: ...
    async def record_refreshes(self, covers: Sequence[Cover]) -> None: ...
    async def mark_answered(self, now: float, limit: int) -> list[float]: ...
    async def mark_failed(
        self, event_ids: Sequence[int], error: str, next_attempt_at: float, max_attempts: int
    ) -> list[int]: ...
    async def defer(self, event_ids: Sequence[int], until: float) -> None: ...
    async def counts(self) -> dict[str, int]: ...
    async def last_delivery_at(self) -> float | None: ...


class CheckpointRepository(Protocol):
    """JSON values by key."""

    async def get(self, key: str) -> Any: ...
    async def set(self, key: str, value: Any, now: float) -> None: ...
    async def delete(self, key: str) -> None: ...


class RunRepository(Protocol):
    """Sync runs: started by a command, finished with their counters, the requests each sent by route, and
    the latest as recorded (`runs`, `/status`)."""

    async def abandon_running(self, now: float) -> int: ...
    async def start(self, now: float, command: str) -> int: ...
    async def finish(
        self, run_id: int, now: float, outcome: str, counters: RunCounters, reason: str | None
    ) -> None: ...
    async def record_requests(self, run_id: int, by_route: Mapping[str, int]) -> None: ...
    async def last_success_at(self) -> float | None: ...
    async def latest(self, limit: int) -> list[RunRecord]: ...


class Unit(Protocol):
    """One transaction (or one read) of the store: its repositories."""

    @property
    def flows(self) -> FlowRepository: ...
    @property
    def grades(self) -> GradeRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...
    @property
    def inbox(self) -> InboxRepository: ...
    @property
    def checkpoints(self) -> CheckpointRepository: ...
    @property
    def runs(self) -> RunRepository: ...


class UnitOfWork(Protocol):
    """The one way the sync loops reach the store.

    `transaction()` commits when its block ends and rolls back when it raises; `read()` sees committed
    rows only and must not write; `exclusive(name)` is a lock every process on the store shares.
    """

    def transaction(self) -> AbstractAsyncContextManager[Unit]: ...
    def read(self) -> AbstractAsyncContextManager[Unit]: ...
    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]: ...
