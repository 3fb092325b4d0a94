"""What a run records about itself, over the in-memory unit of work: its command, outcome and the mirror's
counts, and the `run_id` on the lines it logs (and only on those)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest

from service.adapters.logs import configure_logging, log_fields
from service.core.clock import ManualClock
from service.core.planner import PlanPolicy
from service.core.ports import Json
from service.core.run_record import Changes, MirrorCounts, RunRecord
from service.errors import ApiError, CircuitOpen
from service.sync.poller import Poller
from tests.fake_unit import FakeUnitOfWork
from tests.fakes import FakeWiseflowApi

POLICY = PlanPolicy(poll_interval=900.0, jitter=0.1, search_page=10, participants_page=10)


class GatedApi(FakeWiseflowApi):
    """The fake WISEflow, whose answer to one flow's assessments waits until `gate` is set."""

    def __init__(self, gated_flow: int) -> None:
        super().__init__(page=10)
        self.gated_flow = gated_flow
        self.gate, self.waiting = asyncio.Event(), asyncio.Event()

    async def get_assessments(self, flow_id: int) -> list[Json]:
        if flow_id == self.gated_flow:
            self.waiting.set()
            await self.gate.wait()
        return await super().get_assessments(flow_id)


def rig(api: FakeWiseflowApi, flows: int = 3, concurrency: int = 4) -> tuple[Poller, FakeUnitOfWork]:
    """`flows` flows of 4 participants each in `api`, and a `sync` poller over an empty store."""
    for flow_id in range(1, flows + 1):
        api.add_flow(flow_id, participants=4)
    uow = FakeUnitOfWork()
    poller = Poller(api, uow, ManualClock(), random.Random(1), POLICY, concurrency=concurrency, command="sync")
    return poller, uow


async def latest(uow: FakeUnitOfWork) -> list[RunRecord]:
    """The runs recorded, newest first."""
    async with uow.read() as unit:
        return await unit.runs.latest(20)


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """The JSON log lines written during the test (the root logger restored afterwards)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("INFO", out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    """The log lines as objects."""
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_a_first_run_counts_everything_it_added_and_queued() -> None:
    """3 flows, 12 participants, 12 grades added and 12 versions queued, recorded with its command."""
    poller, uow = rig(FakeWiseflowApi(page=10))
    summary = await poller.run_once()
    expected = MirrorCounts(Changes(added=3), Changes(added=12), Changes(added=12), queued=12)
    assert summary.counts == expected
    (record,) = [r for r in await latest(uow) if r.id == summary.run_id]
    assert (record.command, record.outcome, record.counts, record.requests) == (
        "sync",
        "ok",
        expected,
        summary.api_calls,
    )


async def test_a_second_run_counts_what_changed_and_what_left() -> None:
    """A grade changed, a participant gone, one new, a flow concluded, a flow deleted: each counted once."""
    api = FakeWiseflowApi(page=10)
    poller, _ = rig(api)
    await poller.run_once()
    flow1, flow2 = api.flows[1], api.flows[2]
    flow1.grades[1001] = {"grade": "A", "adminGrade": None, "date": 1_700_000_900}  # changed, queued
    flow1.participants.remove(1002)  # a participant and its grade leave: the grade's withdrawal is queued
    del flow1.grades[1002]
    flow1.participants.append(1009)  # a new participant, not graded yet
    flow1.grades[1009] = {"grade": None, "adminGrade": None, "date": None}
    flow2.state = "CONCLUDED"
    del api.flows[3]  # WISEflow no longer has it: it leaves with its 4 participants and 4 grades
    summary = await poller.run_once(full=True)
    assert summary.outcome == "ok"
    assert summary.counts == MirrorCounts(
        flows=Changes(changed=1, removed=1),
        participants=Changes(added=1, removed=1 + 4),
        grades=Changes(added=1, changed=1, removed=1 + 4),
        queued=1 + 1,  # the changed grade, and the withdrawal of 1002's
    )
    again = await poller.run_once(full=True)
    assert again.counts == MirrorCounts()  # nothing new: nothing counted


async def test_a_pause_is_recorded_as_paused_with_what_was_done_before_it() -> None:
    """The breaker opens on the third flow: `paused`, its reason, and the two flows already committed."""
    api = FakeWiseflowApi(page=10)
    poller, uow = rig(api, concurrency=1)
    api.fail_when(lambda r: r == ("assessments", 3), CircuitOpen("http://x", 5.0, "maintenance"))
    summary = await poller.run_once()
    (record,) = await latest(uow)
    assert (record.outcome, summary.outcome) == ("paused", "paused")
    assert record.error is not None
    assert "CircuitOpen" in record.error
    assert record.counts == MirrorCounts(Changes(added=3), Changes(added=8), Changes(added=8), queued=8)


async def test_a_cancelled_run_is_recorded_as_interrupted() -> None:
    """Cancelled while it waits for WISEflow: the run is closed `interrupted`, not left `running`."""
    api = GatedApi(gated_flow=2)
    poller, uow = rig(api, concurrency=1)
    run = asyncio.create_task(poller.run_once())
    await api.waiting.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    (record,) = await latest(uow)
    assert (record.outcome, record.error) == ("interrupted", "cancelled mid-run")
    assert record.finished_at is not None
    assert record.counts.grades == Changes(added=4)  # flow 1 committed before the cancel


async def test_a_webhook_refresh_beside_a_run_neither_counts_for_it_nor_logs_its_run_id(
    logged: io.StringIO,
) -> None:
    """Lines of the run's tasks carry its `run_id`; a refresh in another task during the run does not, and
    what it removed is not in the run's counts."""
    api = GatedApi(gated_flow=1)
    poller, uow = rig(api, concurrency=1)
    api.gate.set()
    await poller.run_once()
    api.gate.clear()
    api.waiting.clear()
    api.fail_when(
        lambda r: r == ("assessments", 2), ApiError("forbidden", path="/flow/2/assessments", status=403)
    )
    run = asyncio.create_task(poller.run_once(full=True))
    await api.waiting.wait()  # the run is inside flow 1's refresh, discovery done
    del api.flows[3]
    await poller.refresh.refresh_grades(3, with_participants=False)  # a webhook's refresh: flow 3 is gone
    api.gate.set()
    summary = await run
    assert summary.counts == MirrorCounts()  # flow 3 left by the webhook's refresh, not by this run
    by_event = {line.get("event"): line for line in lines(logged)}
    assert by_event["sync.flow_failed"]["run_id"] == summary.run_id  # logged by the run's worker task
    assert "run_id" not in by_event["sync.flow_gone"]  # logged beside the run


def test_log_fields_are_added_to_every_line_of_the_block_only(logged: io.StringIO) -> None:
    """Inside the block every line has the field; a line's own `extra` wins; after it, none has it."""
    log = logging.getLogger("t")
    with log_fields(run_id=7):
        log.info("inside")
        log.info("explicit", extra={"run_id": 8})
    log.info("after")
    inside, explicit, after = lines(logged)
    assert (inside["run_id"], explicit["run_id"], "run_id" in after) == (7, 8, False)
