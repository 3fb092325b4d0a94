"""Sequences WISEflow reuses or skips ahead: no different event is dropped, no real change looks old.

The real webhook endpoint with signed bodies over a real SQLite file, and the inbox worker on the same
database with a refresher that records what it was asked (a refresh is what brings a change to the SIS).
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.adapters.store.unit import SqliteUnitOfWork
from service.adapters.webhook_http import WEBHOOK_PATH
from service.sync.inbox_worker import InboxWorker, WorkerPolicy
from service.sync.signals import Signals
from tests.integration.webhook_helpers import Harness, running_receiver, signed

HOUR = 3600.0


class Refresher:
    """Records each refresh the worker asks for, as (kind, flow)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def refresh_flow(self, flow_id: int) -> None:
        self.calls.append(("flow", flow_id))

    async def refresh_grades(self, flow_id: int, *, with_participants: bool) -> int:
        self.calls.append(("participants" if with_participants else "assessments", flow_id))
        return 0


@dataclass
class Pipeline:
    """The endpoint, and the worker processing what it stored."""

    harness: Harness
    worker: InboxWorker
    refresher: Refresher
    deliveries: int = 0

    async def post(
        self, sequence: int, event: str = "FINAL_GRADE", flow_id: int = 1, participant_id: int | None = 7
    ) -> str:
        """Deliver one signed event (a new delivery id, timestamped now); the answer's status field."""
        self.deliveries += 1
        doc: dict[str, Any] = {
            "id": f"delivery-{self.deliveries}",
            "sequence": sequence,
            "event": event,
            "timestamp": int(self.harness.clock.wall()),
            "data": {"flowId": flow_id, "participantId": participant_id},
        }
        body = orjson.dumps(doc)
        response = await self.harness.client.post(WEBHOOK_PATH, data=body, headers=signed(body))
        assert response.status == 200
        return str((await response.json())["status"])

    async def process(self) -> list[tuple[str, int]]:
        """One worker pass a second later (what comes next arrives a second after it); its refreshes."""
        self.harness.clock.advance(1.0)
        before = len(self.refresher.calls)
        await self.worker.run_once()
        self.harness.clock.advance(1.0)
        return self.refresher.calls[before:]

    async def statuses(self) -> list[tuple[int, str, int, str]]:
        """Every stored event as (sequence, event, flow, status), in order of arrival."""
        sql = "SELECT sequence, event, flow_id, status FROM inbox ORDER BY id"
        async with self.harness.store.db.execute(sql) as cursor:
            return [tuple(r) for r in await cursor.fetchall()]  # type: ignore[misc]


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[Pipeline]:
    async with running_receiver(tmp_path) as harness:
        refresher = Refresher()
        worker = InboxWorker(
            SqliteUnitOfWork(harness.store),
            refresher,
            Signals(),
            harness.clock,
            WorkerPolicy(),
            harness.figures,
            random.Random(1),
        )
        yield Pipeline(harness, worker, refresher)


async def test_a_different_event_under_a_stored_sequence_is_stored_reported_and_processed(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """Flow 2's state change with flow 1's grade's sequence is accepted (not "duplicate"), said once at
    WARNING without personal data, counted, and refreshed; a true redelivery is still absorbed."""
    assert await pipeline.post(5, "FINAL_GRADE", flow_id=1) == "accepted"
    assert await pipeline.process() == [("assessments", 1)]
    with caplog.at_level(logging.WARNING, logger="service.webhooks"):
        assert await pipeline.post(5, "FLOW_STATE_UPDATED", flow_id=2, participant_id=None) == "accepted"
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "webhook.sequence_reused"]
    assert (line.levelno, line.sequence, line.flow_id) == (logging.WARNING, 5, 2)  # type: ignore[attr-defined]
    assert not hasattr(line, "participant_id")
    assert pipeline.harness.figures.sequence_reused == 1
    assert await pipeline.process() == [("flow", 2)]
    assert await pipeline.post(5, "FLOW_STATE_UPDATED", flow_id=2, participant_id=None) == "duplicate"
    assert await pipeline.process() == []
    assert await pipeline.statuses() == [(5, "FINAL_GRADE", 1, "done"), (5, "FLOW_STATE_UPDATED", 2, "done")]
    assert pipeline.harness.figures.duplicates == 1


async def test_grade_changes_after_sequences_far_ahead_are_not_superseded(pipeline: Pipeline) -> None:
    """Events numbered around 10^12 were applied; four real grade changes numbered 14-17 then arrive:
    each flow is refreshed (the change goes to the SIS), none is marked superseded."""
    for offset, flow_id in enumerate((1, 2, 3, 4)):
        assert await pipeline.post(10**12 + offset, flow_id=flow_id) == "accepted"
    assert len(await pipeline.process()) == 4
    for sequence, flow_id in zip((14, 15, 16, 17), (1, 2, 3, 4), strict=True):
        assert await pipeline.post(sequence, flow_id=flow_id) == "accepted"
    assert sorted(await pipeline.process()) == [("assessments", f) for f in (1, 2, 3, 4)]
    assert pipeline.harness.figures.superseded == 0
    assert {status for *_, status in await pipeline.statuses()} == {"done"}


async def test_a_sender_numbering_from_1_again_is_heard(pipeline: Pipeline) -> None:
    """After a restart the sender's sequences start at 1 again: its new events are stored and refreshed;
    the same event again long after any redelivery is new too. Only an identical event (sequence, kind,
    flow, participant) within the redelivery window is taken for a redelivery: the documented limit."""
    for sequence, flow_id in ((1, 1), (2, 2), (3, 3)):
        assert await pipeline.post(sequence, flow_id=flow_id) == "accepted"
    assert len(await pipeline.process()) == 3
    pipeline.harness.clock.advance(600.0)  # the sender restarts ten minutes later
    answers = [await pipeline.post(s, "ASSESSMENT", flow_id=f) for s, f in ((1, 4), (2, 5), (3, 1))]
    assert answers == ["accepted"] * 3
    assert sorted(await pipeline.process()) == [("assessments", f) for f in (1, 4, 5)]
    assert pipeline.harness.figures.sequence_reused == 3
    assert await pipeline.post(2, flow_id=2) == "duplicate"  # identical to sequence 2, 10 min ago
    pipeline.harness.clock.advance(4 * HOUR)
    assert await pipeline.post(2, flow_id=2) == "accepted"
    assert await pipeline.process() == [("assessments", 2)]
