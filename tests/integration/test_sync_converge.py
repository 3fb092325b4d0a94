"""The mirror and the SIS follow WISEflow through every kind of change (fake API, real SQLite, fake sink)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.adapters.store import Store
from service.adapters.store.connection import fetch_value
from service.adapters.store.unit import SqliteUnitOfWork
from service.core.clock import ManualClock
from service.core.planner import PlanPolicy
from service.errors import CircuitOpen
from service.sync.outbox import OutboxDeliverer
from service.sync.poller import Poller
from tests.fakes import FakeSink, FakeWiseflowApi

POLICY = PlanPolicy(poll_interval=900.0, jitter=0.1, search_page=10, participants_page=10)
PID = 1001


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "converge.sqlite3")
    yield s
    await s.close()


class Rig:
    """One flow of three participants, a poller, a deliverer and a SIS; the clock never moves."""

    def __init__(self, store: Store) -> None:
        self.api = FakeWiseflowApi(page=10)
        self.flow = self.api.add_flow(1, participants=3)
        self.store = store
        self.sink = FakeSink()
        clock = ManualClock()
        self.poller = Poller(self.api, SqliteUnitOfWork(store), clock, random.Random(1), POLICY)
        self.deliverer = OutboxDeliverer(SqliteUnitOfWork(store), self.sink, clock, random.Random(2))

    async def sync(self) -> None:
        """A full run (every live flow, due or not), then deliver everything due."""
        summary = await self.poller.run_once(full=True)
        assert summary.outcome == "ok", summary.reason
        await self.deliverer.deliver_due()

    async def mirrored(self) -> list[tuple[Any, ...]]:
        async with self.store.db.execute(
            "SELECT participant_id, grade, admin_grade, grade_date FROM assessments ORDER BY participant_id"
        ) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]

    def truth(self) -> list[tuple[Any, ...]]:
        g = self.flow.grades
        return [(p, g[p]["grade"], g[p]["adminGrade"], g[p]["date"]) for p in sorted(g)]

    def sis_latest(self) -> dict[int, tuple[Any, ...]]:
        """What the SIS holds per participant: the last record it accepted."""
        return {r["participantId"]: (r["grade"], r["adminGrade"], r["date"]) for r, _ in self.sink.deliveries}


@pytest.mark.parametrize(
    "change",
    [{"grade": "C"}, {"adminGrade": "C-admin"}, {"date": 1_700_000_999}],
    ids=["grade", "adminGrade", "date"],
)
async def test_each_grade_field_alone_is_a_new_version_delivered_once(
    store: Store, change: dict[str, Any]
) -> None:
    """Changing grade, adminGrade or date alone: the mirror follows and the SIS gets exactly one new record."""
    rig = Rig(store)
    await rig.sync()
    assert len(rig.sink.deliveries) == 3
    rig.flow.grades[PID].update(change)
    await rig.sync()
    await rig.sync()  # nothing changed since: nothing more is sent
    assert rig.truth() == await rig.mirrored()
    assert len(rig.sink.deliveries) == 4
    assert rig.sink.deliveries[-1][0] == {"flowId": 1, "participantId": PID, **_sis(rig.flow.grades[PID])}
    assert len(set(rig.sink.keys)) == 4


async def test_a_grade_changed_back_reaches_the_sis_again(store: Store) -> None:
    """B -> C -> B: the SIS ends with B (the third version is sent with a key of its own), not C."""
    rig = Rig(store)
    await rig.sync()
    rig.flow.grades[PID]["grade"] = "C"
    await rig.sync()
    rig.flow.grades[PID]["grade"] = "B"
    await rig.sync()
    await rig.sync()
    assert rig.truth() == await rig.mirrored()
    assert rig.sis_latest()[PID] == ("B", None, 1_700_000_500)
    assert len(rig.sink.deliveries) == 5
    assert len(set(rig.sink.keys)) == 5


async def test_a_removed_participant_leaves_the_mirror_even_within_the_same_second(store: Store) -> None:
    """A participant WISEflow no longer lists disappears from participants and grades (clock unchanged)."""
    rig = Rig(store)
    await rig.sync()
    rig.flow.participants.remove(PID)
    del rig.flow.grades[PID]
    await rig.sync()
    assert rig.truth() == await rig.mirrored()
    removed = await fetch_value(store.db, "SELECT count(*) FROM participants WHERE participant_id = ?", (PID,))
    assert removed == 0
    assert await fetch_value(store.db, "SELECT count(*) FROM participants") == 2


async def test_a_flow_that_404s_leaves_the_mirror_and_is_not_polled_again(store: Store) -> None:
    """A listed flow deleted in WISEflow: its refresh 404s, GET /flow confirms, the mirror drops it for good."""
    rig = Rig(store)
    rig.api.add_flow(2, participants=2)
    await rig.sync()
    del rig.api.flows[1]
    await rig.sync()
    await rig.sync()
    assert await fetch_value(store.db, "SELECT count(*) FROM flows WHERE flow_id = 1") == 0
    assert await fetch_value(store.db, "SELECT count(*) FROM assessments WHERE flow_id = 1") == 0
    assert await fetch_value(store.db, "SELECT count(*) FROM assessments WHERE flow_id = 2") == 2
    assert [r for r in rig.api.requests if r[0] == "participants" and r[1][0] == 1][1:] == []


def _sis(grade: dict[str, Any]) -> dict[str, Any]:
    return {"grade": grade["grade"], "adminGrade": grade["adminGrade"], "date": grade["date"]}


async def test_a_malformed_grade_fails_its_flow_only_and_names_no_value(store: Store) -> None:
    """A date that is not a number: that flow's refresh fails (reason without the value), the others go on."""
    rig = Rig(store)
    rig.api.add_flow(2, participants=2)
    rig.flow.grades[PID]["date"] = "Clara Jensen"
    summary = await rig.poller.run_once()
    assert (summary.outcome, summary.flows_refreshed) == ("ok", 1)
    error = str(await fetch_value(store.db, "SELECT last_error FROM flow_plan WHERE flow_id = 1"))
    assert error == "unexpected data from WISEflow (ValueError)"


async def test_a_malformed_listing_fails_the_run_with_a_clear_reason(store: Store) -> None:
    """A search item whose dates are not numbers ends the run as failed, recorded, never a traceback."""
    rig = Rig(store)
    rig.flow.participation = ("Clara", "Jensen")  # type: ignore[assignment]
    summary = await rig.poller.run_once()
    assert (summary.outcome, summary.reason) == ("failed", "unexpected data from WISEflow (ValueError)")
    assert await fetch_value(store.db, "SELECT outcome FROM sync_runs") == "failed"


async def test_a_full_run_interrupted_in_discovery_still_refreshes_every_flow_when_resumed(
    store: Store,
) -> None:
    """`sync --once --full` resumes with full=False after a pause: the marks it set first must survive."""
    rig = Rig(store)
    for flow_id in range(2, 6):
        rig.api.add_flow(flow_id, participants=1)
    await rig.poller.run_once()
    rig.api.fail_when(lambda r: r[0] == "search_flows", CircuitOpen("http://x", 1.0, "maintenance"))
    interrupted = await rig.poller.run_once(full=True)
    resumed = await rig.poller.run_once()
    assert (interrupted.outcome, resumed.outcome) == ("paused", "ok")
    assert resumed.flows_refreshed == 5


async def test_webhook_refreshes_of_a_deleted_flow_drop_it_instead_of_failing(store: Store) -> None:
    """The webhook path (refresh_flow, refresh_grades) on a flow that now 404s: dropped, no error."""
    rig = Rig(store)
    rig.api.add_flow(2, participants=2)
    await rig.sync()
    del rig.api.flows[1], rig.api.flows[2]
    await rig.poller.refresh.refresh_flow(1)
    await rig.poller.refresh.refresh_grades(2, with_participants=False)
    assert await fetch_value(store.db, "SELECT count(*) FROM flows") == 0
    assert await fetch_value(store.db, "SELECT count(*) FROM assessments") == 0


class HeldApi(FakeWiseflowApi):
    """Answers a grades request with the grades as they were when it arrived, but only once released."""

    def __init__(self) -> None:
        super().__init__(page=10)
        self.fetched, self.release = asyncio.Event(), asyncio.Event()
        self.hold = True

    async def get_assessments(self, flow_id: int) -> list[Any]:
        answer = await super().get_assessments(flow_id)
        if self.hold:
            self.hold = False
            self.fetched.set()
            await self.release.wait()
        return answer


async def test_an_older_fetch_that_commits_last_never_moves_the_mirror_backwards(store: Store) -> None:
    """Two processes refresh one flow: the one that fetched first (grade B) commits after the one that
    fetched later (grade C). Its commit is dropped: the mirror keeps C and B is not queued again."""
    api = HeldApi()
    flow = api.add_flow(1, participants=1)
    pid = flow.participants[0]
    other = await Store.open(store.path)  # a second process on the same database
    try:
        clock = ManualClock()
        mine = Poller(api, SqliteUnitOfWork(store), clock, random.Random(1), POLICY)
        theirs = Poller(api, SqliteUnitOfWork(other), clock, random.Random(2), POLICY)
        api.hold = False
        await mine.refresh.refresh_flow(1)  # mirrored, grade B
        await mine.refresh.refresh_grades(1, with_participants=False)
        api.hold = True
        slow = asyncio.create_task(
            mine.refresh.refresh_grades(1, with_participants=False)
        )  # fetches B again, then waits
        await api.fetched.wait()
        flow.grades[pid] = {**flow.grades[pid], "grade": "C"}
        await theirs.refresh.refresh_grades(1, with_participants=False)  # fetches C and commits
        api.release.set()
        await slow
    finally:
        await other.close()
    assert await fetch_value(store.db, "SELECT grade FROM assessments WHERE participant_id = ?", (pid,)) == "C"
    async with store.db.execute("SELECT payload FROM outbox ORDER BY id") as cursor:
        grades = [orjson.loads(row[0])["grade"] for row in await cursor.fetchall()]
    assert grades == ["B", "C"]


class Gate:
    """Where one held answer waits: `reached` once its request was answered, sent on when `opened`."""

    def __init__(self) -> None:
        self.reached, self.opened = asyncio.Event(), asyncio.Event()


class HeldStateApi(FakeWiseflowApi):
    """Answers `GET /flow/{id}`, grades and search pages as WISEflow was when they arrived; the next ones held
    (one per `hold()`, in order) are sent on only when their gate is opened."""

    def __init__(self) -> None:
        super().__init__(page=10)
        self.gates: list[Gate] = []

    def hold(self) -> Gate:
        """Hold the next answer not yet held."""
        self.gates.append(Gate())
        return self.gates[-1]

    async def _held(self) -> None:
        if self.gates:
            gate = self.gates.pop(0)
            gate.reached.set()
            await gate.opened.wait()

    async def get_flow(self, flow_id: int) -> Any:
        answer = await super().get_flow(flow_id)
        await self._held()
        return answer

    async def get_assessments(self, flow_id: int) -> list[Any]:
        answer = await super().get_assessments(flow_id)
        await self._held()
        return answer

    async def search_flows(self, states: Any = None) -> AsyncIterator[Any]:  # type: ignore[override]
        items = [item async for item in super().search_flows(states)]
        await self._held()
        for item in items:
            yield item


async def mirrored_state(store: Store) -> object:
    """Flow 1's state in the mirror."""
    return await fetch_value(store.db, "SELECT state FROM flows WHERE flow_id = 1")


async def test_an_older_fetch_of_a_flows_state_that_commits_last_is_dropped(store: Store) -> None:
    """Two processes read flow 1's state: the fetch that began first (still started) commits after the one
    that began later (concluded). Its write is dropped (it fetches again): the mirror keeps CONCLUDED."""
    api = HeldStateApi()
    flow = api.add_flow(1, state="PARTICIPATION_STARTED", participants=1)
    other = await Store.open(store.path)
    try:
        clock = ManualClock()
        mine = Poller(api, SqliteUnitOfWork(store), clock, random.Random(1), POLICY)
        theirs = Poller(api, SqliteUnitOfWork(other), clock, random.Random(2), POLICY)
        await mine.refresh.refresh_flow(1)
        gate = api.hold()
        slow = asyncio.create_task(mine.refresh.refresh_flow(1))  # fetches PARTICIPATION_STARTED, then waits
        await gate.reached.wait()
        flow.state = "CONCLUDED"
        await theirs.refresh.refresh_flow(1)  # fetches CONCLUDED and commits
        gate.opened.set()
        await slow
    finally:
        await other.close()
    assert await mirrored_state(store) == "CONCLUDED"
    assert api.count("get_flow") == 4  # the slow refresh, having lost, fetched once more


async def test_a_newer_fetch_of_a_flows_state_that_loses_the_race_fetches_again(store: Store) -> None:
    """The fetch that began first (started) commits first; the one begun later (concluded) then finds the
    flow committed since it began and cannot tell whose data is newer: it fetches again, not drops."""
    api = HeldStateApi()
    flow = api.add_flow(1, state="PARTICIPATION_STARTED", participants=1)
    other = await Store.open(store.path)
    try:
        clock = ManualClock()
        mine = Poller(api, SqliteUnitOfWork(store), clock, random.Random(1), POLICY)
        theirs = Poller(api, SqliteUnitOfWork(other), clock, random.Random(2), POLICY)
        await mine.refresh.refresh_flow(1)
        older_gate, newer_gate = api.hold(), api.hold()
        older = asyncio.create_task(theirs.refresh.refresh_flow(1))  # fetches PARTICIPATION_STARTED, then waits
        await older_gate.reached.wait()
        flow.state = "CONCLUDED"
        newer = asyncio.create_task(mine.refresh.refresh_flow(1))  # fetches CONCLUDED, then waits
        await newer_gate.reached.wait()
        older_gate.opened.set()
        await older  # commits PARTICIPATION_STARTED
        newer_gate.opened.set()
        await newer
    finally:
        await other.close()
    assert await mirrored_state(store) == "CONCLUDED"


async def test_a_discovery_page_fetched_before_a_flows_refresh_does_not_undo_it(store: Store) -> None:
    """A discovery pass lists flow 1 as started, then a webhook's refresh commits it concluded before the
    pass commits its page: the pass leaves the newer state (and the flow counts as seen)."""
    api = HeldStateApi()
    flow = api.add_flow(1, state="PARTICIPATION_STARTED", participants=1)
    poller = Poller(api, SqliteUnitOfWork(store), ManualClock(), random.Random(1), POLICY)
    await poller.refresh.refresh_flow(1)
    gate = api.hold()
    run = asyncio.create_task(poller.run_once())  # its discovery page says PARTICIPATION_STARTED
    await gate.reached.wait()
    flow.state = "CONCLUDED"
    await poller.refresh.refresh_flow(1)
    gate.opened.set()
    summary = await run
    assert summary.outcome == "ok", summary.reason
    assert await mirrored_state(store) == "CONCLUDED"
    assert api.count("get_flow") == 2  # listed, so not read again as vanished


async def test_a_newer_grades_fetch_that_loses_the_race_fetches_again(store: Store) -> None:
    """A refresh that fetched grade B commits first; one that began later fetched C and finds the flow
    committed since it began: it fetches again, so the mirror and the outbox end with C, not B."""
    api = HeldStateApi()
    flow = api.add_flow(1, participants=1)
    pid = flow.participants[0]
    other = await Store.open(store.path)
    try:
        clock = ManualClock()
        mine = Poller(api, SqliteUnitOfWork(store), clock, random.Random(1), POLICY)
        theirs = Poller(api, SqliteUnitOfWork(other), clock, random.Random(2), POLICY)
        await mine.refresh.refresh_flow(1)
        older_gate, newer_gate = api.hold(), api.hold()
        older = asyncio.create_task(
            theirs.refresh.refresh_grades(1, with_participants=False)
        )  # fetches B, then waits
        await older_gate.reached.wait()
        flow.grades[pid] = {**flow.grades[pid], "grade": "C"}
        newer = asyncio.create_task(
            mine.refresh.refresh_grades(1, with_participants=False)
        )  # fetches C, then waits
        await newer_gate.reached.wait()
        older_gate.opened.set()
        await older  # commits B
        newer_gate.opened.set()
        await newer
    finally:
        await other.close()
    assert await fetch_value(store.db, "SELECT grade FROM assessments WHERE participant_id = ?", (pid,)) == "C"
    async with store.db.execute("SELECT payload FROM outbox ORDER BY id") as cursor:
        grades = [orjson.loads(row[0])["grade"] for row in await cursor.fetchall()]
    assert grades == ["B", "C"]
