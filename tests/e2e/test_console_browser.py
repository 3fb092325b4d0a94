"""The operator console in a real headless browser: the whole service against the simulator, after real runs.

Each page is loaded by Debian's chromium; the tests read the text a person sees, check it against the
simulator's own journal and truth (the X-Trace-Ids it sent, the names and grades it holds), and keep a
screenshot of each page (in $WISEFLOW_SYNC_ARTIFACTS/console, else a pytest tmp dir).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page

from service.app import SERVICE, Service, build_app
from service.certify import TITLES
from service.settings import load_settings
from service.sync.until_done import sync_until_done
from tests.browser import chromium
from tests.conftest import SimHandle
from tests.tools import artifacts_dir

VIEWPORT = {"width": 1600, "height": 1000}
# Grades of the simulator's 7-point scale that no count, time or duration on the page can spell as a word
# ("-3" can: three rows removed, in the runs table's `+added ~changed -removed`).
DISTINCTIVE_GRADES = ("00", "02")
# Every <dt>/<dd> pair of each <section>, by the section's heading: how /certify's figures are read.
FIGURES_JS = """() => Object.fromEntries([...document.querySelectorAll('section')].map(s => [
  s.querySelector('h2').textContent.trim(),
  Object.fromEntries([...s.querySelectorAll('dt')].map(dt => [dt.textContent.trim(),
                                                              dt.nextElementSibling.textContent.trim()]))]))"""

StartService = Callable[[SimHandle], Awaitable[tuple[TestServer, Service]]]


@pytest.fixture
async def start_service(tmp_path: Path) -> AsyncIterator[StartService]:
    """Starts the service (build_app, loops not started: the test drives the runs) against a simulator."""
    servers: list[TestServer] = []

    async def start(sim: SimHandle) -> tuple[TestServer, Service]:
        env = {
            "WISEFLOW_API_URL": sim.api_url,
            "WISEFLOW_CLIENT_ID": sim.config.client_id,
            "WISEFLOW_CLIENT_SECRET": sim.config.client_secret,
            "WISEFLOW_CLIENT_NAME": "wiseflow-sync-console",
            "WISEFLOW_WEBHOOK_SECRET": sim.config.webhook_secret,
            "SYNC_DATABASE": str(tmp_path / f"console-{len(servers)}.sqlite3"),
            "SYNC_SINK_URL": sim.sis_url,
            "SYNC_POLL_INTERVAL": "3600",
        }
        server = TestServer(build_app(load_settings(env), start=False), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server, server.app[SERVICE]

    yield start
    for server in servers:
        await server.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go."""
    return artifacts_dir(tmp_path_factory, "console")


async def load(page: Page, server: TestServer, path: str, problems: list[str]) -> str:
    """Open `path` and return the page's visible text; every request off the service's origin is a problem."""
    origin = str(server.make_url("/")).rstrip("/")
    page.on("request", lambda r: None if r.url.startswith(origin) else problems.append(f"fetched {r.url}"))
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    response = await page.goto(str(server.make_url(path)))
    assert response is not None
    assert response.status == 200
    return await page.inner_text("body")


def assert_nothing_personal(text: str, html: str, truth: dict[str, Any], sim: SimHandle) -> None:
    """No participant's name, ids or phone, no grade, no secret or token on the page (text and markup)."""
    people = [p for flow in truth["flows"] for p in flow["participants"]]
    names = {p["user"][key] for p in people for key in ("firstName", "lastName")}
    assert {n for n in names if re.search(rf"\b{re.escape(n)}\b", text)} == set()
    words = set(re.split(r"[\s/(),;]+", text))  # not on ":": a time (09:12:02) is one word
    identifiers = {str(p["participantId"]) for p in people} | {str(p["userId"]) for p in people}
    identifiers |= {p["uniqueExamId"] for p in people}
    identifiers |= {p["user"]["phone"].split()[-1] for p in people}
    assert words & identifiers == set()
    assert words & set(DISTINCTIVE_GRADES) == set()
    assert re.search(r"grade\W+(?:12|10|7|4|02|00|-3)\b", text, re.IGNORECASE) is None
    secrets = {sim.config.client_secret, sim.config.webhook_secret, sim.config.api_key}
    secrets |= set(sim.state.tokens._tokens)  # every bearer token the simulator issued (white-box)
    assert {s for s in secrets if s in html} == set()


async def test_the_console_shows_runs_backlogs_and_requests_after_a_sync(
    simulator: SimHandle, start_service: StartService, artifacts: Path
) -> None:
    """After a sync the browser shows ready, the ok run with its requests, the X-Trace-Ids; nothing personal."""
    server, service = await start_service(simulator)
    outcome = await sync_until_done(service.runner.run, max_wait=60)
    assert outcome.outcome == "ok"
    await service.journal.flush()
    journal = await simulator.journal()
    problems: list[str] = []
    async with chromium() as browser:
        page = await browser.new_page(viewport=VIEWPORT)
        text = await load(page, server, "/", problems)
        html = await page.content()
        await page.screenshot(path=str(artifacts / "console.png"), full_page=True)
        cards = {card: await page.inner_text(f"#{card}") for card in ("readiness", "breaker", "pause", "sink")}
        runs = [
            [await cell.inner_text() for cell in await row.query_selector_all("td")]
            for row in await page.query_selector_all("#runs tbody tr")
        ]
        traces = [await cell.inner_text() for cell in await page.query_selector_all("#requests td:last-child")]
        font_size = await page.evaluate("getComputedStyle(document.documentElement).fontSize")
    assert problems == []
    assert font_size == "20px"  # the inline stylesheet was applied: its CSP hash matches
    assert "Ready" in cards["readiness"]
    assert "closed" in cards["breaker"]
    assert "None" in cards["pause"]
    assert "Delivering" in cards["sink"]
    async with service.uow.read() as unit:
        (run,) = await unit.runs.latest(10)
    counts = run.counts
    shown = [runs[0][i] for i in (0, 1, 4, 5, 6, 7, 8, 9)]
    assert len(runs) == 1
    assert shown == [
        str(run.id), "run", "ok", str(len(journal)),
        *(f"+{c.added} ~{c.changed} -{c.removed}" for c in (counts.flows, counts.participants, counts.grades)),
        str(counts.queued),
    ]  # fmt: skip
    assert counts.grades.added > 0
    sent = {r["traceId"] for r in journal}
    assert len(traces) == 15
    assert set(traces) <= sent
    assert f"wiseflow-sync diagnose {traces[0]}" in text
    assert "Outbox (grades for the SIS)" in text
    assert_nothing_personal(text, html, await simulator.truth(), simulator)


async def test_the_console_shows_a_maintenance_pause_and_the_503(
    simulator: SimHandle, start_service: StartService, artifacts: Path
) -> None:
    """A run paused by maintenance: the saved pause, the paused run with its error and the 503 are shown."""
    server, service = await start_service(simulator)
    # Longer than SYNC_RETRY_AFTER_MAX (60 s): the run ends paused at once instead of waiting it out.
    await simulator.scenario({"maintenance": {"seconds": 600, "retry_after": 300}})
    summary = await service.runner.run(False)
    assert summary.outcome == "paused"
    await service.journal.flush()
    problems: list[str] = []
    async with chromium() as browser:
        page = await browser.new_page(viewport=VIEWPORT)
        text = await load(page, server, "/", problems)
        await page.screenshot(path=str(artifacts / "console-maintenance.png"), full_page=True)
        pause = await page.inner_text("#pause")
        runs = await page.inner_text("#runs")
        statuses = [await c.inner_text() for c in await page.query_selector_all("#requests td:nth-child(3)")]
    assert problems == []
    assert "Paused" in pause
    assert "s left" in pause
    assert "paused" in runs
    assert summary.reason is not None
    assert summary.reason in runs
    assert "503" in statuses
    assert "Ready" in text  # WISEflow's maintenance never makes the service unready for webhooks


async def test_the_certify_page_renders_the_document_without_calling_wiseflow(
    simulator: SimHandle, start_service: StartService, artifacts: Path
) -> None:
    """/certify shows every review section with the measured figures, and loading it sends WISEflow nothing."""
    server, service = await start_service(simulator)
    assert (await sync_until_done(service.runner.run, max_wait=60)).outcome == "ok"
    await service.journal.flush()
    before = await simulator.journal()
    problems: list[str] = []
    async with chromium() as browser:
        page = await browser.new_page(viewport=VIEWPORT)
        text = await load(page, server, "/certify", problems)
        html = await page.content()
        await page.screenshot(path=str(artifacts / "certify.png"), full_page=True)
        figures = await page.evaluate(FIGURES_JS)
    assert problems == []
    assert await simulator.journal() == before
    assert all(title in text for title in TITLES.values())
    assert figures[TITLES["rate_limits"]]["Requests"] == str(len(before))
    assert figures[TITLES["auth"]]["Client name"] == "wiseflow-sync-console"
    assert figures[TITLES["webhooks"]]["Events source"] == "SYNC_WEBHOOK_EVENTS"
    assert "never calls WISEflow" in text
    assert_nothing_personal(text, html, await simulator.truth(), simulator)
