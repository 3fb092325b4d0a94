"""The tables of `FakeUnitOfWork` (tests/fake_unit.py), and its flows, grades, checkpoints and runs."""

from __future__ import annotations

import copy
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from service.core.blindness import MirroredFlow
from service.core.planner import DueKey, FlowPlan, due_in_order, due_key
from service.core.records import Flow, GradeVersion, Participant
from service.core.run_record import Changes, MirrorCounts, RunRecord, one_line
from service.core.store_ports import InboxRow, RunCounters, StoredFlow
from service.errors import StoreError


@dataclass
class FlowRow:
    """A row of `flows` with its plan (None: no `flow_plan` row yet)."""

    flow: Flow
    seen_at: float
    state_version: int
    plan: FlowPlan | None = None
    refresh_version: int = 0
    last_error: str | None = None


@dataclass
class OutboxRow:
    """A row of `outbox`."""

    id: int
    key: str
    version: GradeVersion
    created_at: float
    status: str = "pending"
    attempts: int = 0
    refusals: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None


@dataclass
class Tables:
    """Every table of the store, as plain Python."""

    flows: dict[int, FlowRow] = field(default_factory=dict)
    state_clock: int = 0
    participants: dict[tuple[int, int], Participant] = field(default_factory=dict)
    grades: dict[tuple[int, int], tuple[GradeVersion, float]] = field(default_factory=dict)
    outbox: dict[int, OutboxRow] = field(default_factory=dict)
    inbox: dict[int, InboxRow] = field(default_factory=dict)  # by the event's id
    refreshes: dict[tuple[int, str], float] = field(default_factory=dict)  # (flow, event) -> began_at
    deliveries: list[float] = field(default_factory=list)  # received_at of each delivery, in order
    checkpoints: dict[str, bytes] = field(default_factory=dict)
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    run_requests: dict[int, dict[str, int]] = field(default_factory=dict)


class Repository:
    """A repository over one unit's tables; a write through a read-only unit is the store's error."""

    def __init__(self, tables: Tables, writable: bool) -> None:
        self.t = tables
        self._writable = writable

    def _write(self) -> Tables:
        if not self._writable:
            raise StoreError("OperationalError: attempt to write a readonly database")
        return self.t


class FakeFlows(Repository):
    """`unit.flows` in memory."""

    async def get(self, flow_id: int) -> StoredFlow | None:
        return (await self.get_many([flow_id])).get(flow_id)

    async def get_many(self, flow_ids: Iterable[int]) -> dict[int, StoredFlow]:
        rows = {i: self.t.flows.get(i) for i in flow_ids}
        return {i: (r.flow, r.plan) for i, r in rows.items() if r is not None and r.plan is not None}

    async def page(self, after: int, limit: int) -> list[StoredFlow]:
        return list((await self.get_many(sorted(i for i in self.t.flows if i > after))).values())[:limit]

    async def due(self, now: float, after: DueKey | None, limit: int) -> list[StoredFlow]:
        stored = (await self.get_many(self.t.flows)).values()
        return [fp for fp in due_in_order(stored, now) if after is None or due_key(*fp) > after][:limit]

    async def count_due(self, now: float) -> int:
        return len(due_in_order((await self.get_many(self.t.flows)).values(), now))

    async def live(self) -> list[MirroredFlow]:
        changes: dict[int, float] = {}
        for (flow_id, _), (_, at) in self.t.grades.items():
            changes[flow_id] = max(at, changes.get(flow_id, at))
        return [
            MirroredFlow(
                *(
                    f.flow_id,
                    f.state,
                    f.participation_start,
                    f.participation_end,
                    f.marking_start,
                    f.marking_end,
                ),
                changes.get(f.flow_id),
            )
            for f in (r.flow for r in self.t.flows.values())
            if f.state != "ARCHIVED"
        ]

    async def vanished(self, pass_started: float) -> list[int]:
        rows = sorted(self.t.flows.items())
        return [i for i, r in rows if r.plan and r.seen_at < pass_started and not r.plan.final_fetch_done]

    async def save(
        self, flow: Flow, now: float, *, clock: int | None = None, seen_at: float | None = None
    ) -> Changes | None:
        t = self._write()
        t.state_clock += 1
        row = t.flows.get(flow.flow_id)
        if row is None or clock is None or row.state_version <= clock:
            seen = now if seen_at is None else seen_at
            before = {} if row is None else {flow.flow_id: row.flow}
            if row is None:
                t.flows[flow.flow_id] = FlowRow(flow, seen, t.state_clock)
            else:
                row.flow, row.seen_at, row.state_version = flow, max(row.seen_at, seen), t.state_clock
            return Changes.between(before, {flow.flow_id: flow})
        if seen_at is not None:
            row.seen_at = max(row.seen_at, seen_at)
        return None

    async def save_many(
        self, flows: Sequence[Flow], now: float, *, clock: int | None = None, seen_at: float | None = None
    ) -> list[Changes | None]:
        return [await self.save(flow, now, clock=clock, seen_at=seen_at) for flow in flows]

    async def save_plans(self, plans: Mapping[int, FlowPlan]) -> None:
        t = self._write()
        for flow_id, plan in plans.items():
            if flow_id not in t.flows:
                raise StoreError("IntegrityError: FOREIGN KEY constraint failed")
            t.flows[flow_id].plan, t.flows[flow_id].last_error = plan, None

    async def record_error(self, flow_id: int, error: str) -> None:
        row = self._write().flows.get(flow_id)
        if row is not None and row.plan is not None:
            row.last_error = error[:500]

    async def delete(self, flow_id: int, clock: int) -> MirrorCounts | None:
        t = self._write()
        row = t.flows.get(flow_id)
        if row is None or row.state_version > clock:
            return None
        del t.flows[flow_id]  # with its participants and grades; its outbox rows stay
        removed = MirrorCounts(flows=Changes(removed=1))
        for table, changes in ((t.participants, removed.participants), (t.grades, removed.grades)):
            for key in [k for k in table if k[0] == flow_id]:
                del table[key]
                changes.removed += 1
        return removed

    async def state_clock(self) -> int:
        return self.t.state_clock

    async def refresh_version(self, flow_id: int) -> int:
        row = self.t.flows.get(flow_id)
        return 0 if row is None else row.refresh_version

    async def claim_refresh(self, flow_id: int, version: int) -> bool:
        row = self._write().flows.get(flow_id)
        if row is None or row.refresh_version != version:
            return False
        row.refresh_version += 1
        return True


class FakeGrades(Repository):
    """`unit.grades` in memory."""

    async def replace_participants(
        self, flow_id: int, participants: Sequence[Participant], now: float
    ) -> Changes:
        t = self._write()
        stored = {pid: p for (f, pid), p in t.participants.items() if f == flow_id}
        for pid in stored:
            del t.participants[(flow_id, pid)]
        t.participants.update({(flow_id, p.participant_id): p for p in participants})
        return Changes.between(stored, {p.participant_id: p for p in participants})

    async def keys(self, flow_id: int) -> dict[int, str]:
        return {pid: v.idempotency_key for (f, pid), (v, _) in self.t.grades.items() if f == flow_id}

    async def write(self, versions: Sequence[GradeVersion], now: float) -> Changes:
        grades = self._write().grades
        stored = sum(1 for v in versions if (v.flow_id, v.participant_id) in grades)
        grades.update({(v.flow_id, v.participant_id): (v, now) for v in versions})
        return Changes(added=len(versions) - stored, changed=stored)

    async def remove_except(self, flow_id: int, participant_ids: Iterable[int]) -> Changes:
        t, keep = self._write(), set(participant_ids)
        gone = [k for k in t.grades if k[0] == flow_id and k[1] not in keep]
        for key in gone:
            del t.grades[key]
        return Changes(removed=len(gone))

    async def stream(self) -> AsyncGenerator[GradeVersion, None]:
        for key in sorted(self.t.grades):
            yield self.t.grades[key][0]


class FakeCheckpoints(Repository):
    """`unit.checkpoints` in memory, as JSON like the table."""

    async def get(self, key: str) -> Any:
        value = self.t.checkpoints.get(key)
        return None if value is None else orjson.loads(value)  # JSON, as the table keeps it

    async def set(self, key: str, value: Any, now: float) -> None:
        self._write().checkpoints[key] = orjson.dumps(value)

    async def delete(self, key: str) -> None:
        self._write().checkpoints.pop(key, None)


class FakeRuns(Repository):
    """`unit.runs` in memory."""

    async def abandon_running(self, now: float) -> int:
        running = [r for r in self._write().runs.values() if r["outcome"] == "running"]
        for run in running:
            run.update(outcome="interrupted", ended_at=now, reason="process ended mid-run")
        return len(running)

    async def start(self, now: float, command: str) -> int:
        run_id = max(self._write().runs, default=0) + 1
        self.t.runs[run_id] = {"started_at": now, "outcome": "running", "ended_at": None, "command": command}
        return run_id

    async def finish(
        self, run_id: int, now: float, outcome: str, counters: RunCounters, reason: str | None
    ) -> None:
        self._write().runs[run_id].update(ended_at=now, outcome=outcome, counters=counters, reason=reason)

    async def record_requests(self, run_id: int, by_route: Mapping[str, int]) -> None:
        self._write().run_requests[run_id] = dict(by_route)

    async def last_success_at(self) -> float | None:
        return max((r["ended_at"] for r in self.t.runs.values() if r["outcome"] == "ok"), default=None)

    async def latest(self, limit: int) -> list[RunRecord]:
        newest = sorted(self.t.runs.items(), reverse=True)[:limit]
        return [_record(run_id, run) for run_id, run in newest]


def _record(run_id: int, run: dict[str, Any]) -> RunRecord:
    """A run as `FakeRuns` keeps it, as recorded (counters only once it finished)."""
    counters = run.get("counters") or RunCounters()
    return RunRecord(
        run_id,
        run["command"],
        run["started_at"],
        run["ended_at"],
        run["outcome"],
        counters.api_calls,
        copy.deepcopy(counters.mirror),
        one_line(run.get("reason")),
    )
