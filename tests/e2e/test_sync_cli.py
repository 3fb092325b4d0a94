"""`sync --once` as a command: waiting out short pauses, naming long ones, progress output, export."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest

from service.adapters.store import Store
from service.adapters.store.connection import fetch_value
from service.adapters.wiseflow.records import route_of
from service.cli import main
from service.commands.export import export_grades
from service.commands.sync import EXIT_FAILED, EXIT_PAUSED, ProgressReport, sync_once
from service.sync.poller import Progress
from tests.conftest import SimHandle
from tests.e2e.test_sync_simulator import ShiftedClock, settings_for, truth_grades
from tests.waiting import wait_until


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


async def test_a_short_maintenance_is_waited_out_and_the_run_resumes(
    simulator: SimHandle, tmp_path: Path
) -> None:
    """A short maintenance window within SYNC_MAX_WAIT: one pause line, then exit 0 with a complete mirror."""
    # Open until the command has met it: a timed window could end before its first request under load.
    await simulator.scenario({"maintenance": {"open": True, "retry_after": 1}})
    settings = settings_for(
        simulator, tmp_path / "short.sqlite3", SYNC_RETRY_AFTER_MAX="0.2", SYNC_MAX_WAIT="30"
    )
    err = io.StringIO()
    command = asyncio.create_task(sync_once(settings, err))
    await wait_until(lambda: 503 in [r["status"] for r in simulator.state.journal], what="a 503 answered")
    await simulator.scenario({"maintenance": {"open": False}})
    assert await command == 0
    lines = err.getvalue().splitlines()
    assert any(line.startswith("wiseflow-sync sync: pausing") for line in lines)
    assert lines[-1].startswith("wiseflow-sync sync: ok:")


async def test_a_long_maintenance_ends_the_command_with_one_clear_line(
    simulator: SimHandle, tmp_path: Path
) -> None:
    """A 120 s window against SYNC_MAX_WAIT=2: exit 75 and a line naming the limit and the reason."""
    await simulator.scenario({"maintenance": {"seconds": 120, "retry_after": 120}})
    settings = settings_for(simulator, tmp_path / "long.sqlite3", SYNC_RETRY_AFTER_MAX="0.2", SYNC_MAX_WAIT="2")
    err = io.StringIO()
    assert await sync_once(settings, err) == EXIT_PAUSED
    last = err.getvalue().splitlines()[-1]
    assert "SYNC_MAX_WAIT (2 s)" in last
    assert "ApiUnavailable" in last or "CircuitOpen" in last
    assert "resumes from its checkpoint" in last


async def test_a_retry_after_longer_than_the_max_wait_is_not_waited_inside_a_call(
    simulator: SimHandle, tmp_path: Path
) -> None:
    """SYNC_MAX_WAIT=2 with the default SYNC_RETRY_AFTER_MAX (60): a 20 s Retry-After on the very first
    request ends the command (75) instead of being waited out inside the call."""
    await simulator.scenario({"maintenance": {"seconds": 60, "retry_after": 20}})
    settings = settings_for(simulator, tmp_path / "first.sqlite3", SYNC_MAX_WAIT="2")
    err = io.StringIO()
    assert await sync_once(settings, err) == EXIT_PAUSED
    assert "SYNC_MAX_WAIT (2 s)" in err.getvalue().splitlines()[-1]
    assert len(await simulator.journal()) == 1  # the token request met the window; nothing was retried


async def test_export_prints_the_mirror_as_jsonl_and_csv(simulator: SimHandle, tmp_path: Path) -> None:
    """After a sync, both formats list every mirrored grade with the five fields."""
    db = tmp_path / "export.sqlite3"
    assert await sync_once(settings_for(simulator, db), io.StringIO()) == 0
    expected = len(truth_grades(await simulator.truth()))
    jsonl, csv_out = io.StringIO(), io.StringIO()
    await export_grades(str(db), "jsonl", jsonl)
    await export_grades(str(db), "csv", csv_out)
    assert len(jsonl.getvalue().splitlines()) == expected
    rows = csv_out.getvalue().splitlines()
    assert rows[0] == "flowId,participantId,grade,adminGrade,date"
    assert len(rows) == expected + 1


def test_progress_is_a_redrawn_bar_on_a_terminal() -> None:
    """On a TTY the report redraws one line with a bar; the closing line clears it first."""
    out = Terminal()
    report = ProgressReport(out)
    report(Progress("flows", 5, 10))
    report.line("done")
    text = out.getvalue()
    assert text.startswith("\r")
    assert "[###############...............] 5/10 flows refreshed" in text
    assert text.endswith("\r\033[Kdone\n")


def test_progress_is_plain_periodic_lines_otherwise() -> None:
    """Not a TTY: a plain line, then nothing until the period has passed."""
    out = io.StringIO()
    report = ProgressReport(out, every=3600)
    report(Progress("discovery", 100, None))
    report(Progress("discovery", 200, None))
    assert out.getvalue() == "wiseflow-sync sync: 100 flows listed\n"


async def test_without_a_sink_grades_wait_in_the_outbox_for_one(simulator: SimHandle, tmp_path: Path) -> None:
    """No SYNC_SINK_URL: exit 0, nothing sent, every grade exportable and queued; a later run with the sink
    set delivers them all (before, they were mirrored but never queued, so never sent)."""
    db = tmp_path / "nosink.sqlite3"
    graded = len(graded_keys(await simulator.truth()))
    settings = dataclasses.replace(settings_for(simulator, db), sink_url=None)
    err = io.StringIO()
    assert await sync_once(settings, err) == 0
    assert f"no grades delivered (SYNC_SINK_URL is not set: {graded} queued" in err.getvalue().splitlines()[-1]
    out = io.StringIO()
    await export_grades(str(db), "jsonl", out)
    assert len(out.getvalue().splitlines()) == len(truth_grades(await simulator.truth()))
    assert (await simulator.sis_grades())["deliveries"] == []
    assert await sync_once(settings_for(simulator, db), io.StringIO()) == 0
    assert (await simulator.sis_grades())["unique"] == graded


def graded_keys(truth: dict[str, Any]) -> set[tuple[int, int]]:
    """(flowId, participantId) of every assessment with a grade or an administrative grade."""
    return {k for k, (grade, admin, _) in truth_grades(truth).items() if grade or admin}


async def test_a_refused_grade_never_holds_back_the_others(
    simulator: SimHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One participant answered 422: `sync --once` delivers every other grade, dead-letters that one after
    a bounded number of tries and exits 1 naming `outbox dead-letters`; a replay once the SIS accepts it
    delivers it (measured before: other participants' grades were left undelivered)."""
    graded = graded_keys(await simulator.truth())
    victim = min(graded)[1]
    await simulator.sis_scenario({"refuse": {str(victim): 422}})
    db = tmp_path / "refused.sqlite3"
    clock = ShiftedClock()

    async def sleep(seconds: float) -> None:  # the retries' waits pass on the clock, not in the test
        clock.offset += seconds

    err = io.StringIO()
    assert await sync_once(settings_for(simulator, db), err, clock=clock, sleep=sleep) == EXIT_FAILED
    assert "outbox dead-letters" in err.getvalue().splitlines()[-1]
    sis = await simulator.sis_grades()
    assert {(d["flowId"], d["participantId"]) for d in sis["deliveries"]} == graded - {min(graded)}
    env = {"SYNC_DATABASE": str(db)}
    assert await asyncio.to_thread(main, ["outbox", "dead-letters"], env) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2
    assert f" {victim} " in listed[1]
    assert "422" in listed[1]
    await simulator.sis_scenario({"reset": True})
    assert await asyncio.to_thread(main, ["outbox", "replay", "--all"], env) == 0
    assert await sync_once(settings_for(simulator, db), io.StringIO(), clock=clock, sleep=sleep) == 0
    assert (await simulator.sis_grades())["unique"] == len(graded)


async def test_a_runs_api_calls_are_counted_on_the_wire_by_route(simulator: SimHandle, tmp_path: Path) -> None:
    """With errors injected, the run's api_calls and run_requests equal what WISEflow received (token and
    retries included), route by route: counted, not derived from page sizes."""
    await simulator.scenario({"error_rate": 0.2})
    db = tmp_path / "wire.sqlite3"
    assert await sync_once(settings_for(simulator, db, SYNC_MAX_WAIT="60"), io.StringIO()) == 0
    received: dict[str, int] = {}
    for request in await simulator.journal():
        route = f"{request['method']} {route_of(request['path'].removeprefix('/v1'))}"
        received[route] = received.get(route, 0) + 1
    store = await Store.open(db)
    try:
        async with store.db.execute("SELECT route, SUM(requests) FROM run_requests GROUP BY route") as cursor:
            counted = {str(row[0]): int(row[1]) for row in await cursor.fetchall()}
        calls = await fetch_value(store.db, "SELECT SUM(api_calls) FROM sync_runs")
    finally:
        await store.close()
    assert counted == received
    assert calls == sum(received.values())
    assert received["POST /oauth2/token"] >= 1
    assert sum(1 for r in await simulator.journal() if r["status"] >= 500) > 0  # retries did happen
