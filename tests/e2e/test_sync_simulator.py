"""The sync engine end to end: the real client against the simulator, a real SQLite file, the fake SIS."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bench.call_forecast import run_forecast
from service.adapters.store.connection import fetch_value
from service.commands.sync import Engine, open_engine, sync_once
from service.core.clock import SystemClock
from service.core.records import GradeVersion
from service.settings import Settings, load_settings
from tests.conftest import SimFactory, SimHandle
from tests.waiting import wait_until


class ShiftedClock(SystemClock):
    """The real clock, moved forward on demand: lets a test skip a poll interval without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


def settings_for(sim: SimHandle, db: Path, **extra: str) -> Settings:
    env = {
        "WISEFLOW_API_URL": sim.api_url,
        "WISEFLOW_CLIENT_ID": "demo-client",
        "WISEFLOW_CLIENT_SECRET": "demo-secret",
        "SYNC_DATABASE": str(db),
        "SYNC_SINK_URL": sim.sis_url,
        "SYNC_RATE_PER_SECOND": "200",
        "SYNC_RATE_PER_MINUTE": "5000",
        **extra,
    }
    return load_settings(env)


async def mirror_of(engine: Engine) -> dict[tuple[int, int], tuple[Any, Any, Any]]:
    async with engine.uow.read() as unit:
        return {
            (g.flow_id, g.participant_id): (g.grade, g.admin_grade, g.date) async for g in unit.grades.stream()
        }


def truth_grades(truth: dict[str, Any]) -> dict[tuple[int, int], tuple[Any, Any, Any]]:
    return {
        (f["flow"]["id"], a["participantId"]): (
            a.get("grade") or None,
            a.get("adminGrade") or None,
            a.get("date"),
        )
        for f in truth["flows"]
        for a in f["assessments"]
    }


async def assert_mirror_equals_truth(engine: Engine, sim: SimHandle) -> None:
    truth = await sim.truth()
    assert await mirror_of(engine) == truth_grades(truth)
    async with engine.store.db.execute("SELECT flow_id, state FROM flows") as cur:
        states = {int(r[0]): r[1] for r in await cur.fetchall()}
    assert states == {f["flow"]["id"]: f["state"] for f in truth["flows"]}
    async with engine.store.db.execute("SELECT flow_id, participant_id FROM participants") as cur:
        participants = {(int(r[0]), int(r[1])) for r in await cur.fetchall()}
    assert participants == {
        (f["flow"]["id"], p["participantId"]) for f in truth["flows"] for p in f["participants"]
    }


def truth_keys(truth: dict[str, Any]) -> set[str]:
    """The idempotency keys of every graded version in the truth."""
    return {
        GradeVersion(flow, participant, *version).idempotency_key
        for (flow, participant), version in truth_grades(truth).items()
        if version[0] or version[1]
    }


def delivered_keys(sis: dict[str, Any]) -> list[str]:
    return [d["idempotencyKey"] for d in sis["deliveries"]]


def api_requests(journal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The journal without token requests (the plan's formula counts API calls, not authentication)."""
    return [r for r in journal if not r["path"].endswith("/oauth2/token")]


@pytest.fixture
async def world(make_simulator: SimFactory) -> SimHandle:
    # 30 flows (five of each state) x 130 participants: participant listings span two pages.
    return await make_simulator(flows=30, participants=130)


@pytest.fixture
async def engine(world: SimHandle, tmp_path: Path) -> AsyncIterator[Engine]:
    async with open_engine(settings_for(world, tmp_path / "e2e.sqlite3"), ShiftedClock()) as e:
        yield e


async def test_a_first_sync_mirrors_the_truth_and_delivers_every_grade_once(
    world: SimHandle, engine: Engine
) -> None:
    """After one run the mirror equals /_sim/truth and the SIS holds every graded version exactly once."""
    summary = await engine.poller.run_once()
    assert engine.deliverer is not None
    await engine.deliverer.deliver_due()
    assert summary.outcome == "ok"
    await assert_mirror_equals_truth(engine, world)
    sis = await world.sis_grades()
    assert sorted(delivered_keys(sis)) == sorted(truth_keys(await world.truth()))
    assert sis["duplicates"] == 0
    assert len(api_requests(await world.journal())) == run_forecast(summary, engine.poller.policy).total


async def test_an_idle_second_sync_costs_what_the_plan_predicts(world: SimHandle, engine: Engine) -> None:
    """Nothing changed: the journal shows exactly the formula's calls, far fewer than the first run's."""
    first = await engine.poller.run_once()
    await world.clear_journal()
    second = await engine.poller.run_once()
    calls = len(api_requests(await world.journal()))
    assert (second.outcome, second.changes, second.flows_refreshed) == ("ok", 0, 0)
    # one search page, one events page
    assert calls == run_forecast(second, engine.poller.policy).total == 1 + 1
    assert calls * 20 < first.api_calls


async def test_a_webhook_refresh_beside_a_run_is_not_counted_for_it(world: SimHandle, engine: Engine) -> None:
    """Grades refreshed for webhooks while a run is under way are not the run's requests: the run counts
    the formula's two, WISEflow receives those and the refreshes'."""
    await engine.poller.run_once()  # everything mirrored, the token fetched
    async with engine.uow.read() as unit:
        flows = [flow.flow_id for flow, _ in await unit.flows.page(0, 5)]
    await world.clear_journal()
    await world.scenario({"latency_ms": 300})  # every answer takes a while: the refreshes overlap the run
    before = engine.client.calls
    run = asyncio.create_task(engine.poller.run_once())
    await wait_until(lambda: engine.client.calls > before, what="the run's first request sent")
    assert not run.done()
    refreshes = (engine.poller.refresh.refresh_grades(f, with_participants=False) for f in flows)
    await asyncio.gather(*refreshes)
    summary = await run
    assert (summary.outcome, summary.flows_refreshed) == ("ok", 0)
    assert summary.api_calls == run_forecast(summary, engine.poller.policy).total == 1 + 1
    received = await world.journal()
    assert len(received) == engine.client.calls - before == summary.api_calls + len(flows)


async def test_a_changed_grade_reaches_the_sis_exactly_once(world: SimHandle, engine: Engine) -> None:
    """Grades changed in WISEflow reach the SIS once each: by polling (marking) or by the webhook path."""
    assert engine.deliverer is not None
    await engine.poller.run_once()
    await engine.deliverer.deliver_due()
    before = truth_keys(await world.truth())
    changes = await world.advance({"grade_changes": 6})
    assert changes
    clock = engine.poller.clock
    assert isinstance(clock, ShiftedClock)
    clock.offset += 2 * 900  # past every active flow's poll interval
    await engine.poller.run_once()
    for change in changes:
        if change["event"] == "FINAL_GRADE":  # concluded flows are not polled: the webhook path covers them
            await engine.poller.refresh.refresh_grades(change["flowId"], with_participants=False)
    await engine.deliverer.deliver_due()
    await engine.deliverer.deliver_due()  # a second pass finds nothing: nothing is sent twice
    await assert_mirror_equals_truth(engine, world)
    sis = await world.sis_grades()
    after = truth_keys(await world.truth())
    assert len(after - before) == len({(c["flowId"], c["participantId"]) for c in changes})
    assert sorted(delivered_keys(sis)) == sorted(before | after)  # every version once, none twice


async def test_a_full_run_reconciles_a_concluded_flow_whose_webhook_was_lost(
    world: SimHandle, engine: Engine
) -> None:
    """A concluded flow's late grade change, its webhook lost, is missed by plans; a full run finds it."""
    await engine.poller.run_once()
    changes = await world.advance({"grade_changes": 12})
    late = [c for c in changes if c["event"] == "FINAL_GRADE"]
    assert late, "the seeded world changes at least one concluded flow's grade"
    planned = await engine.poller.run_once()
    assert planned.flows_refreshed == 0
    full = await engine.poller.run_once(full=True)
    truth = await world.truth()
    live = [f for f in truth["flows"] if f["state"] != "ARCHIVED"]
    assert (full.outcome, full.flows_refreshed) == ("ok", len(live))
    await assert_mirror_equals_truth(engine, world)
    after = await engine.poller.run_once()
    assert after.flows_refreshed == 0  # the marks were spent: the next planned run is idle again


async def test_a_maintenance_window_mid_run_ends_it_cleanly_and_the_next_run_finishes(
    world: SimHandle, tmp_path: Path
) -> None:
    """Maintenance after a few flows: the run is paused, and the next run completes the mirror."""
    settings = settings_for(world, tmp_path / "m.sqlite3", SYNC_RETRY_AFTER_MAX="0.5", SYNC_CONCURRENCY="2")
    started: list[bool] = []

    def on_progress(progress: Any) -> None:
        # Applied in place (the simulator runs in this process), so the window opens before the next request:
        # an HTTP call scheduled from here could land after the run had already finished every flow.
        if progress.phase == "flows" and progress.done == 5 and not started:
            maintenance = {"maintenance": {"seconds": 30, "retry_after": 1}}
            world.state.scenario.apply(maintenance, world.clock.monotonic(), world.config)
            started.append(True)

    async with open_engine(settings, ShiftedClock(), on_progress) as engine:
        first = await engine.poller.run_once()
        assert first.outcome == "paused", first
        assert 5 <= first.flows_refreshed < 30
        await world.scenario({"reset": True})
        # The breaker reads the loop's clock, as the limiter does: its 1 s open time passes for real.
        await wait_until(lambda: engine.client.breaker.retry_after() == 0, what="the breaker's open time over")
        second = await engine.poller.run_once()
        assert second.outcome == "ok"
        assert second.flows_refreshed == 30 - first.flows_refreshed
        await assert_mirror_equals_truth(engine, world)
        runs = await fetch_value(engine.store.db, "SELECT group_concat(outcome) FROM sync_runs ORDER BY run_id")
        assert runs == "paused,ok"


async def test_sync_once_prints_one_summary_line_and_exits_zero(world: SimHandle, tmp_path: Path) -> None:
    """The command's in-process form: exit 0, plain lines (not a TTY), a final summary with the figures."""
    err = io.StringIO()
    code = await sync_once(settings_for(world, tmp_path / "cli.sqlite3"), err)
    lines = err.getvalue().strip().splitlines()
    assert code == 0
    assert lines[-1].startswith("wiseflow-sync sync: ok: ")
    assert "API calls" in lines[-1]
    assert "grades delivered" in lines[-1]


async def test_state_and_grade_changes_converge_by_planned_runs_alone(world: SimHandle, engine: Engine) -> None:
    """States, grades (concluded flows' too) and papers change, no webhook: planned runs reach the truth."""
    assert engine.deliverer is not None
    await engine.poller.run_once()
    changes = await world.advance({"state_changes": 8, "grade_changes": 20, "paper_submissions": 5})
    assert {c["event"] for c in changes} >= {"FLOW_STATE_UPDATED", "FINAL_GRADE"}
    clock = engine.poller.clock
    assert isinstance(clock, ShiftedClock)
    clock.offset += 1.5 * 86400  # past the reconcile interval (1 day +-10%) of every concluded flow
    assert (await engine.poller.run_once()).outcome == "ok"
    await engine.deliverer.deliver_due()
    await assert_mirror_equals_truth(engine, world)
    sis = await world.sis_grades()
    assert sis["duplicates"] == 0
    assert set(delivered_keys(sis)) >= truth_keys(await world.truth())
