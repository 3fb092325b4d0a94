"""certify: answers follow the live configuration, and figures come from the database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.adapters.store import Store
from service.certify import answers, gather_figures, render_markdown
from service.cli import main
from service.settings import load_settings


def test_answers_follow_the_configuration() -> None:
    """Changing a setting changes the answer that states it; secrets never appear."""
    settings = load_settings(
        {
            "WISEFLOW_CLIENT_ID": "id",
            "WISEFLOW_CLIENT_SECRET": "hunter2-secret",
            "WISEFLOW_CLIENT_NAME": "uni-x-sis-bridge",
            "WISEFLOW_WEBHOOK_SECRET": "whk-secret-1,whk-secret-2",
            "SYNC_POLL_INTERVAL": "600",
            "SYNC_RATE_PER_SECOND": "15",
        }
    )
    text = render_markdown(answers(settings, None))
    assert "'uni-x-sis-bridge' on every request" in text
    assert "every 600 s" in text
    assert "15/s" in text
    assert "2 secret(s) configured" in text
    assert "not measured yet" in text
    assert "secret-" not in text.replace("secret(s)", "")
    assert [s["title"][:2] for s in answers(settings, None)] == [f"{n}." for n in range(1, 9)]


async def test_figures_are_read_from_the_database(tmp_path: Path) -> None:
    """Runs, journalled statuses, webhook duplicates and dead letters are counted from the tables."""
    store = await Store.open(tmp_path / "c.sqlite3")
    try:
        async with store.transaction() as db:
            await db.execute(
                "INSERT INTO sync_runs (started_at, ended_at, outcome, api_calls) VALUES (1, 2, 'ok', 40), "
                "(3, 4, 'ok', 6), (5, 6, 'interrupted', 3), (7, 8, 'ok', 6)"
            )
            await db.execute(
                "INSERT INTO request_journal (at, method, path, status, duration_ms, attempt) VALUES "
                "(1, 'GET', '/a', 200, 1, 1), (2, 'GET', '/a', 429, 1, 1), (3, 'GET', '/a', NULL, 1, 2)"
            )
            await db.execute(
                "INSERT INTO inbox (sequence, event, event_timestamp, body, received_at, status) VALUES "
                "(1, 'FINAL_GRADE', 1, x'7b7d', 1, 'done'), (2, 'ASSESSMENT', 1, x'7b7d', 1, 'dead')"
            )
            await db.execute(
                "INSERT INTO inbox_deliveries (delivery_id, sequence, received_at) VALUES "
                "('a', 1, 1), ('b', 1, 2), ('c', 2, 3)"
            )
        figures = await gather_figures(store)
    finally:
        await store.close()
    assert (figures.runs, figures.runs_ok, figures.last_full_calls, figures.latest_calls) == (4, 3, 40, 6)
    assert figures.median_calls == 6.0
    assert figures.by_status == {200: 1, 429: 1, 0: 1}
    assert (figures.events, figures.deliveries, figures.duplicates, figures.dead_letters) == (2, 3, 1, 1)


def test_the_command_prints_json_and_does_not_create_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`certify --format json` works before the service ever ran, and leaves no database behind."""
    database = tmp_path / "absent.sqlite3"
    code = main(["certify", "--format", "json"], {"SYNC_DATABASE": str(database)})
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["sections"]) == 8
    assert not database.exists()


def test_missing_credentials_are_said_not_invented() -> None:
    """Without any credentials the authentication answer says so instead of claiming an API key."""
    text = render_markdown(answers(load_settings({}), None))
    assert "NOT CONFIGURED: set WISEFLOW_CLIENT_ID" in text
    assert "static x-api-key" not in text
