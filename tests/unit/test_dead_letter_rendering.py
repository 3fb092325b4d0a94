"""`inbox` and `outbox` dead letters: one listing and one replay report, whichever queue they come from."""

from __future__ import annotations

import io
import json

import pytest

from service.commands import inbox, outbox
from service.commands.dead_letters import Queue, write_dead_letters, write_replay
from service.core.store_ports import DeadLetter, Replay

EVENT = DeadLetter(11, "FINAL_GRADE", 5, 7, 8, "ApiError: refused | status=422 | attempt=1", 1_700_000_000.0)
GRADE = DeadLetter(3, "grade", 5, 7, 5, "sink refused the delivery (status=400)", 1_700_000_000.0)


def listing(rows: list[DeadLetter], fmt: str) -> str:
    out = io.StringIO()
    write_dead_letters(rows, fmt, out)
    return out.getvalue()


def test_both_queues_list_in_one_shape() -> None:
    """The same header and columns as text, the same keys as JSON, for an event and a grade."""
    text = listing([EVENT, GRADE], "text").splitlines()
    assert text[0].split() == ["ID", "ITEM", "FLOW", "PARTICIPANT", "ATTEMPTS", "SINCE", "LAST", "ERROR"]
    assert [line.split()[:5] for line in text[1:]] == [
        ["11", "FINAL_GRADE", "5", "7", "8"],
        ["3", "grade", "5", "7", "5"],
    ]
    doc = json.loads(listing([EVENT, GRADE], "json"))
    assert [list(item) for item in doc] == [list(doc[0])] * 2
    assert doc[0]["since"] == "2023-11-14T22:13:20+00:00"
    assert listing([], "text") == "no dead letters\n"


@pytest.mark.parametrize(("queue", "item"), [(inbox.QUEUE, "event"), (outbox.QUEUE, "row")])
def test_both_queues_report_a_replay_alike(queue: Queue, item: str) -> None:
    """Re-queued, nothing to replay, an unknown ID (exit 1): the same sentences, naming the queue's item."""
    said = []
    for item_id, outcome in (
        (None, Replay(2, 0, "dead")),
        (4, Replay(0, 0, "pending")),
        (None, Replay(0, 0, "dead")),
    ):
        out = io.StringIO()
        assert write_replay(queue, item_id, outcome, out, io.StringIO()) == 0
        said.append(out.getvalue().strip())
    err = io.StringIO()
    assert write_replay(queue, 999, Replay(0, 0, None), io.StringIO(), err) == 1
    assert said[0].startswith("re-queued 2 ")
    assert said[1:] == [f"{item} 4 is pending: nothing to replay", "no dead letters to replay"]
    assert err.getvalue() == f"wiseflow-sync {queue.name} replay: no {item} with id 999\n"


def test_a_superseded_grade_is_reported_not_replayed() -> None:
    """The outbox's rule: a dead grade with a newer one queued or delivered stays dead, and says why."""
    out = io.StringIO()
    assert write_replay(outbox.QUEUE, None, Replay(1, 1, "dead"), out, io.StringIO()) == 0
    assert out.getvalue().splitlines() == [
        "re-queued 1 grade delivery(ies); the deliverer sends them next",
        "left 1 dead: a newer grade of the same participant supersedes it",
    ]
