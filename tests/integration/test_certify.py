"""certify: one typed document, JSON in the contract's shape, Markdown from the same object."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.adapters.store import Store
from service.adapters.store.journal import JournalWriter
from service.adapters.store.unit import SqliteUnitOfWork
from service.adapters.wiseflow import RequestRecord
from service.adapters.wiseflow.endpoints import ENDPOINTS
from service.certify import build, render_markdown, requests_per_run
from service.cli import main
from service.commands.certify import subscribed_events
from service.settings import load_settings
from tests.conftest import SimHandle

SECTIONS = ["overview", "auth", "endpoints", "sync", "webhooks", "rate_limits", "logging", "errors"]


def as_json(document: object) -> dict[str, Any]:
    """The document as `--format json` prints it."""
    data: dict[str, Any] = json.loads(orjson.dumps(document))
    return data


def test_json_has_a_key_per_section_and_the_figures_as_numbers() -> None:
    """The contract's shape: eight section keys, client_name a string, requests_per_run's five keys."""
    settings = load_settings(
        {
            "WISEFLOW_CLIENT_ID": "id",
            "WISEFLOW_CLIENT_SECRET": "hunter2-secret",
            "WISEFLOW_CLIENT_NAME": "uni-x-sis-bridge",
            "WISEFLOW_WEBHOOK_SECRET": "whk-secret-1-0123456,whk-secret-2-0123456",
            "SYNC_POLL_INTERVAL": "600",
            "SYNC_RATE_PER_SECOND": "15",
        }
    )
    document = build(settings, None)
    data = as_json(document)
    assert list(data) == SECTIONS
    assert data["auth"]["client_name"] == "uni-x-sis-bridge"
    assert data["auth"]["method"] == "oauth2_client_credentials"
    assert data["sync"]["poll_interval_s"] == 600
    assert data["rate_limits"]["per_second"] == 15
    assert data["webhooks"]["secrets_configured"] == 2
    assert data["sync"]["requests_per_run"] == dict.fromkeys(["first_full", "latest", "median", "p95", "max"])
    assert data["rate_limits"]["answers_429"] is None
    text = orjson.dumps(document).decode() + render_markdown(document)
    assert "secret-" not in text.replace("secrets_configured", "")
    assert "hunter2" not in text


def test_markdown_renders_the_same_object() -> None:
    """Every section under its review title; a figure not measured says so."""
    text = render_markdown(build(load_settings({"WISEFLOW_CLIENT_NAME": "uni-x"}), None))
    titles = [line for line in text.splitlines() if line.startswith("## ")]
    assert [t[3:5] for t in titles] == [f"{n}." for n in range(1, 9)]
    assert "- Client name: uni-x" in text
    assert "- Answers 429: not measured" in text
    assert "- Answers with Retry-After (429, 503): not measured" in text
    assert "- Method: not_configured" in text


def test_endpoints_are_the_clients_registry_without_license_info_for_the_sync() -> None:
    """The endpoint list is the registry; an endpoint only preflight calls says so."""
    data = as_json(build(load_settings({}), None))
    assert [(e["method"], e["path"]) for e in data["endpoints"]] == [(e.method, e.path) for e in ENDPOINTS]
    license_info = next(e for e in data["endpoints"] if e["path"] == "/license/info")
    assert license_info["used_by"] == ["preflight"]


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        ([], (None, None, None, None, None)),
        ([40], (40, 40, 40.0, 40.0, 40)),
        ([40, 6, 6, 9], (40, 9, 7.5, 40.0, 40)),
        ([100, *range(1, 21)], (100, 20, 11.0, 20.0, 100)),
    ],
)
def test_requests_per_run_first_latest_median_p95_max(
    calls: list[int], expected: tuple[int | None, ...]
) -> None:
    """first_full is the first successful run; median, p95 (nearest rank) and max over recent runs."""
    figures = requests_per_run(calls)
    assert (figures.first_full, figures.latest, figures.median, figures.p95, figures.max) == expected


async def test_figures_are_read_from_the_database(tmp_path: Path) -> None:
    """Runs, journalled statuses by endpoint, webhook duplicates and dead letters come from the tables."""
    store = await Store.open(tmp_path / "c.sqlite3")
    try:
        async with store.transaction() as db:
            await db.execute(
                "INSERT INTO sync_runs (started_at, ended_at, outcome, api_calls) VALUES (1, 2, 'ok', 40), "
                "(3, 4, 'ok', 6), (5, 6, 'interrupted', 3), (7, 8, 'ok', 6)"
            )
            await db.execute(
                "INSERT INTO request_journal (at, method, path, status, duration_ms, attempt) VALUES "
                "(1, 'GET', '/flow/1', 200, 1, 1), (2, 'GET', '/flow/2', 429, 500, 1), "
                "(4, 'GET', '/flow/2', NULL, 1, 2), (5, 'POST', '/oauth2/token', 200, 1, 1)"
            )
            await db.execute(
                "INSERT INTO inbox (sequence, event, event_timestamp, body, received_at, status, delivery_id)"
                " VALUES (1, 'FINAL_GRADE', 1, x'7b7d', 1, 'done', 'a'),"
                " (2, 'ASSESSMENT', 1, x'7b7d', 3, 'dead', 'c')"
            )
            await db.execute(  # a redelivery of the first event
                "INSERT INTO inbox_deliveries (delivery_id, event_id, received_at) VALUES ('b', 1, 2)"
            )
        async with SqliteUnitOfWork(store).read() as unit:
            figures = await unit.figures.stored()
    finally:
        await store.close()
    data = as_json(build(load_settings({}), figures))
    assert data["sync"]["runs"] == 4
    assert data["sync"]["runs_ok"] == 3
    assert data["sync"]["requests_per_run"] == {
        "first_full": 40,
        "latest": 6,
        "median": 6.0,
        "p95": 40.0,
        "max": 40,
    }
    observed = {f"{e['method']} {e['path']}": e["observed"] for e in data["endpoints"]}
    assert (observed["GET /flow/{flowId}"], observed["POST /oauth2/token"]) == (3, 1)
    assert (data["rate_limits"]["answers_429"], data["rate_limits"]["requests"]) == (1, 4)
    assert data["rate_limits"]["shortest_wait_after_429_s"] == 1.5  # answered at 2.5, next sent at 4
    assert (data["errors"]["no_answer"], data["auth"]["token_requests"]) == (1, 1)
    webhooks = data["webhooks"]
    assert (webhooks["distinct_events"], webhooks["deliveries"], webhooks["duplicates"]) == (2, 3, 1)
    assert webhooks["dead_letters"] == 1


async def test_retry_after_answers_and_how_many_were_waited_out_come_from_the_journal(tmp_path: Path) -> None:
    """Written by the journal writer: a 429 waited out, a 503 whose wait a request broke, a 429 without one."""
    store = await Store.open(tmp_path / "c.sqlite3")
    try:
        journal = JournalWriter(store)
        for record in (
            RequestRecord(10.0, "GET", "/flow/1", 429, 500, 1, "t1", 2.0),  # read at 10.5: nothing before 12.5
            RequestRecord(12.5, "GET", "/flow/1", 503, 500, 2, "t2", 3.0),  # read at 13.0: nothing before 16.0
            RequestRecord(15.0, "GET", "/flow/1", 429, 0, 3, "t3"),  # ... but this left at 15.0
            RequestRecord(15.5, "GET", "/flow/1", 200, 0, 4, "t4"),
        ):
            journal.record(record)
        await journal.close()
        async with SqliteUnitOfWork(store).read() as unit:
            data = as_json(build(load_settings({}), await unit.figures.stored()))
    finally:
        await store.close()
    assert (data["rate_limits"]["retry_after_answers"], data["rate_limits"]["retry_after_honoured"]) == (2, 1)
    assert data["rate_limits"]["answers_429"] == 2


async def test_with_no_retry_after_answer_honoured_is_not_measured(tmp_path: Path) -> None:
    """A database whose journal holds no Retry-After answer: zero seen, honoured `null` (nothing to honour)."""
    store = await Store.open(tmp_path / "q.sqlite3")
    try:
        async with SqliteUnitOfWork(store).read() as unit:
            data = as_json(build(load_settings({}), await unit.figures.stored()))
    finally:
        await store.close()
    limits = data["rate_limits"]
    assert (limits["retry_after_answers"], limits["retry_after_honoured"]) == (0, None)


def test_the_command_prints_json_and_does_not_create_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`certify --format json` works before the service ever ran, and leaves no database behind."""
    database = tmp_path / "absent.sqlite3"
    code = main(["certify", "--format", "json"], {"SYNC_DATABASE": str(database)})
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert list(document) == SECTIONS
    assert document["webhooks"]["events_source"] == "SYNC_WEBHOOK_EVENTS"
    assert not database.exists()


async def test_events_come_from_wiseflows_subscription_when_it_answers(simulator: SimHandle) -> None:
    """With a subscription for our URL, its events (not the setting's) are the answer, saying so."""
    env = {
        "WISEFLOW_API_URL": simulator.api_url,
        "WISEFLOW_CLIENT_ID": simulator.config.client_id,
        "WISEFLOW_CLIENT_SECRET": simulator.config.client_secret,
        "SYNC_PUBLIC_WEBHOOK_URL": "https://sis.example.edu/webhooks/wiseflow",
        "SYNC_WEBHOOK_EVENTS": "FINAL_GRADE,ASSESSMENT,FLOW_STATE_UPDATED",
    }
    settings = load_settings(env)
    assert await subscribed_events(settings) is None  # no subscription yet: the setting answers
    async with simulator.session.post(
        simulator.api_url + "/webhooks",
        json={"title": "t", "url": env["SYNC_PUBLIC_WEBHOOK_URL"], "events": ["FINAL_GRADE"], "active": True},
        headers=simulator.auth_headers(),
    ) as response:
        assert response.status in (200, 201)
    assert await subscribed_events(settings) == ["FINAL_GRADE"]
    document = build(settings, None, ["FINAL_GRADE"], "wiseflow")
    assert (document.webhooks.events, document.webhooks.events_source) == (["FINAL_GRADE"], "wiseflow")
    unreachable = load_settings({**env, "WISEFLOW_API_URL": "http://127.0.0.1:9/v1"})
    assert await asyncio.wait_for(subscribed_events(unreachable), 60) is None


def test_missing_credentials_are_said_not_invented() -> None:
    """Without any credentials the authentication answer says so instead of claiming an API key."""
    data = as_json(build(load_settings({}), None))
    assert (data["auth"]["method"], data["auth"]["token_endpoint"]) == ("not_configured", None)
