"""`sync --once` as a command: waiting out short pauses, naming long ones, progress output, export."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from service.adapters.store import Store
from service.adapters.store.connection import fetch_value
from service.commands.export import export_grades
from service.commands.sync import EXIT_PAUSED, ProgressReport, sync_once
from service.sync.poller import Progress
from tests.conftest import SimHandle
from tests.e2e.test_sync_simulator import settings_for, truth_grades


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


async def test_a_short_maintenance_is_waited_out_and_the_run_resumes(
    simulator: SimHandle, tmp_path: Path
) -> None:
    """A 1 s maintenance window within SYNC_MAX_WAIT: one pause line, then exit 0 with a complete mirror."""
    await simulator.scenario({"maintenance": {"seconds": 1, "retry_after": 1}})
    settings = settings_for(
        simulator, tmp_path / "short.sqlite3", SYNC_RETRY_AFTER_MAX="0.2", SYNC_MAX_WAIT="10"
    )
    err = io.StringIO()
    assert await sync_once(settings, err) == 0
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


async def test_without_a_sink_the_outbox_stays_empty_and_grades_export(
    simulator: SimHandle, tmp_path: Path
) -> None:
    """No SYNC_SINK_URL: exit 0, nothing queued, nothing sent to the SIS, and every grade is exportable."""
    db = tmp_path / "nosink.sqlite3"
    settings = dataclasses.replace(settings_for(simulator, db), sink_url=None)
    err = io.StringIO()
    assert await sync_once(settings, err) == 0
    assert "no grades delivered (SYNC_SINK_URL is not set" in err.getvalue().splitlines()[-1]
    store = await Store.open(db)
    try:
        assert await fetch_value(store.db, "SELECT count(*) FROM outbox") == 0
    finally:
        await store.close()
    out = io.StringIO()
    await export_grades(str(db), "jsonl", out)
    assert len(out.getvalue().splitlines()) == len(truth_grades(await simulator.truth()))
    assert (await simulator.sis_grades())["deliveries"] == []
