"""The poller: one sync run discovers flows, reads participation events, and refreshes the flows due.

    run_once():  discovery   POST /flows/search (paged)          -> flows + plans (planner.plan_after_discovery)
                 vanished    GET /flow/{id} for flows no longer listed and not finished (archived, usually)
                 events      POST /participation-events since the cursor -> early refreshes
                 refresh     per due flow (read a page at a time: sync/due.py), `concurrency` at a time:
                             participants, assessments, new plan, changed grades + outbox rows, all in
                             ONE transaction per flow, committed only if no later refresh of the flow
                             committed first (sync/refresh.py)

Runs never overlap: an asyncio lock within the process, and a file lock (`Store.exclusive`) across
processes, so `sync --once` and a running service take turns. Every flow's refresh commits with its new
plan, so the plan is the checkpoint: a run ended by the breaker, a Retry-After or kill -9 leaves the
flows it did not reach still due, and the next run picks them up first. Discovery keeps its pass start in
a checkpoint so a resumed pass still knows which flows it has seen; the events cursor moves only once a
window is fully read.

Each run is recorded (`unit.runs`, what `wiseflow-sync runs` lists) with the command that started it and
its outcome: ok; failed (refused credentials, a malformed listing); paused (WISEflow asked for a pause: a
Retry-After, maintenance, the open breaker); interrupted (cancelled mid-run here, or its process died,
which the next run records); with its requests counted on the wire and what it added, changed and removed
in the mirror.
A run goes through its own views, `api.counting(tally)` and `refresh.counting(tally, counts)`, so what it
sends and commits is counted for it, and a webhook's refresh beside it (through the plain ones) is not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.trace import Tracer

from service.adapters.logs import log_fields
from service.adapters.spans import NO_TRACER, mark_error, unit_span
from service.core import planner
from service.core.clock import Clock
from service.core.failures import BAD_DATA, Verdict, classify, describe, needs_operator, retry_after
from service.core.planner import LIVE_STATES, FlowPlan, PlanPolicy
from service.core.ports import WiseflowApi
from service.core.records import Flow
from service.core.request_tally import RequestTally
from service.core.run_record import Changes, MirrorCounts
from service.core.run_summary import Progress, RunSummary
from service.core.store_ports import RunCounters, UnitOfWork
from service.errors import ApiError, ServiceError
from service.sync.due import DueFlows, replan_all
from service.sync.refresh import FlowRefresh

__all__ = ["Poller", "Progress", "RunSummary"]

log = logging.getLogger("service.sync")

DISCOVERY_KEY = "discovery"
ARCHIVED_SCANNED_KEY = "archived_scanned"
EVENTS_CURSOR_KEY = "events_cursor"
# Flows written per discovery transaction: one search page.
DISCOVERY_BATCH = 100


@dataclass(frozen=True, slots=True)
class _Run:
    """One run as its steps share it: what it did so far, its tally, and its counting views."""

    summary: RunSummary
    tally: RequestTally
    api: WiseflowApi
    refresh: FlowRefresh


class Poller:
    """The sync engine's polling side; its `refresh` is also what the webhook worker and catch-up call."""

    def __init__(
        self,
        api: WiseflowApi,
        uow: UnitOfWork,
        clock: Clock,
        rng: planner.Random,
        policy: PlanPolicy,
        *,
        concurrency: int = 4,
        on_progress: Callable[[Progress], None] | None = None,
        command: str = "run",
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self._api = api
        self._command = command  # what its runs are recorded as started by: run, sync or demo
        self._uow = uow
        self._clock = clock
        self._rng = rng
        self._policy = policy
        self._concurrency = max(1, concurrency)
        self._on_progress = on_progress or (lambda _: None)
        self._run_lock = asyncio.Lock()
        self._tracer = tracer  # the run's spans: sync.run, sync.discovery, sync.events, sync.refresh_flow
        self.refresh = FlowRefresh(api, uow, clock, rng, policy)

    @property
    def policy(self) -> PlanPolicy:
        """The plan's intervals and page sizes."""
        return self._policy

    @property
    def clock(self) -> Clock:
        """The clock the plan reads."""
        return self._clock

    async def run_once(self, *, full: bool = False) -> RunSummary:
        """One sync run; never raises for WISEflow trouble, which ends the run as paused (or failed).

        `full` is a reconciliation: after discovery every flow not archived is refreshed, due or not. Every
        line logged while the run goes on, by its task or the tasks it starts, carries its `run_id`.
        """
        async with self._run_lock, self._uow.exclusive("sync"):
            started = time.monotonic()
            async with self._uow.transaction() as unit:
                await unit.runs.abandon_running(self._clock.wall())
                summary = RunSummary(await unit.runs.start(self._clock.wall(), self._command), "running")
            tally = RequestTally()
            refresh = self.refresh.counting(tally, summary.counts)
            run = _Run(summary, tally, self._api.counting(tally), refresh)
            attributes = {"sync.run_id": summary.run_id, "sync.full": full}
            with (
                log_fields(run_id=summary.run_id),
                unit_span(self._tracer, "sync.run", attributes=attributes) as span,
            ):
                try:
                    await self._run(run, full=full)
                    summary.outcome = "ok"
                except asyncio.CancelledError:  # the process is stopping: closed now, not left running
                    summary.outcome, summary.reason = "interrupted", "cancelled mid-run"
                    await self._finish(run, started)
                    raise
                except Exception as exc:
                    _judge(summary, exc)
                await self._finish(run, started)
                span.set_attribute("sync.outcome", summary.outcome)
                if summary.outcome != "ok":
                    mark_error(summary.reason or summary.outcome)
            return summary

    async def _run(self, run: _Run, *, full: bool) -> None:
        if full:  # marked first and committed, so a run interrupted by discovery keeps the marks
            async with self._uow.transaction() as unit:
                await replan_all(unit, planner.request_reconciliation, self._policy.due_page)
        with unit_span(self._tracer, "sync.discovery"):
            await self._discover(run)
        with unit_span(self._tracer, "sync.events"):
            await self._read_events(run)
        await self._refresh_due(run)

    async def _discover(self, run: _Run) -> None:
        """List flows (every live state; archived ones once, on a first pass) and update their plans."""
        summary = run.summary
        async with self._uow.transaction() as unit:
            checkpoint = await unit.checkpoints.get(DISCOVERY_KEY)
            scanned = bool(await unit.checkpoints.get(ARCHIVED_SCANNED_KEY))
            if checkpoint is None:  # a fresh pass; an interrupted one keeps its start and its state filter
                archived = self._policy.mirror_archived_once and not scanned
                checkpoint = {"pass_started": self._clock.wall(), "archived": archived}
                await unit.checkpoints.set(DISCOVERY_KEY, checkpoint, self._clock.wall())
        pass_started = float(checkpoint["pass_started"])
        # Read before the first page: a flow whose state another fetch, begun after this one, committed
        # meanwhile keeps that state (a long pass only ever loses freshness, never moves a flow backwards).
        async with self._uow.read() as unit:
            clock = await unit.flows.state_clock()
        states = (*LIVE_STATES, "ARCHIVED") if checkpoint["archived"] else LIVE_STATES
        batch: list[Flow] = []
        async for item in run.api.search_flows(states):
            batch.append(Flow.from_search(item))
            summary.flows_listed += 1
            summary.records += 1
            if len(batch) >= DISCOVERY_BATCH:
                await self._save_discovered(run, batch, pass_started, clock)
                self._on_progress(Progress("discovery", summary.flows_listed, None))
                batch = []
        await self._save_discovered(run, batch, pass_started, clock)
        await self._check_vanished(run, pass_started)
        async with self._uow.transaction() as unit:
            await unit.checkpoints.delete(DISCOVERY_KEY)
            if checkpoint["archived"]:
                await unit.checkpoints.set(ARCHIVED_SCANNED_KEY, True, self._clock.wall())

    async def _save_discovered(self, run: _Run, flows: list[Flow], pass_started: float, clock: int) -> None:
        if not flows:
            return
        now = self._clock.wall()
        saved = Changes()
        async with self._uow.transaction() as unit:
            known = await unit.flows.get_many(f.flow_id for f in flows)
            saves = await unit.flows.save_many(flows, now, clock=clock, seen_at=pass_started)
            plans: dict[int, FlowPlan] = {}
            for flow, changes in zip(flows, saves, strict=True):
                previous, plan = known.get(flow.flow_id, (None, None))
                if changes is None:
                    continue  # a later fetch of this flow committed first: it planned the flow too
                saved += changes
                new_plan = planner.plan_after_discovery(previous, flow, plan, now, self._policy)
                if new_plan != plan:
                    plans[flow.flow_id] = new_plan
            await unit.flows.save_plans(plans)
        run.summary.counts.add(MirrorCounts(flows=saved))

    async def _check_vanished(self, run: _Run, pass_started: float) -> None:
        """A flow no longer listed (archived since, or deleted) gets its state read once."""
        async with self._uow.read() as unit:
            vanished = await unit.flows.vanished(pass_started)
        for flow_id in vanished:
            await run.refresh.refresh_flow(flow_id)

    async def _read_events(self, run: _Run) -> None:
        """Mark flows with a PAPER_HANDED_IN since the cursor for an early refresh; advance the cursor."""
        now = self._clock.wall()
        async with self._uow.read() as unit:
            cursor = await unit.checkpoints.get(EVENTS_CURSOR_KEY)
        window = planner.event_window(cursor, now, self._policy.events_overlap)
        flow_ids: set[int] = set()
        if window is not None:
            run.summary.events = 0
            async for event in run.api.iter_participation_events(*window, types=["PAPER_HANDED_IN"]):
                run.summary.events += 1
                flow_ids |= planner.flows_to_refresh([event])
        async with self._uow.transaction() as unit:
            known = await unit.flows.get_many(flow_ids)
            await unit.flows.save_plans(planner.replan(known, planner.request_early_refresh))
            await unit.checkpoints.set(EVENTS_CURSOR_KEY, now if window is None else window[1], now)

    async def _refresh_due(self, run: _Run) -> None:
        """Refresh every due flow, `concurrency` at a time; the first run-stopping error ends them all.

        The due flows are read a page at a time as the workers take them (`DueFlows`), not all at once.
        """
        due = DueFlows(self._uow, self._clock.wall(), self._policy.due_page)
        total = await due.count()

        async def worker() -> None:
            while (stored := await due.take()) is not None:
                await self._refresh_one(run, *stored)
                self._on_progress(Progress("flows", run.summary.flows_refreshed, total))

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self._concurrency, max(total, 1))):
                    group.create_task(worker())
        except ExceptionGroup as failed:  # the first worker's error ends the run; the others were cancelled
            raise _first_leaf(failed) from None

    async def _refresh_one(self, run: _Run, flow: Flow, plan: FlowPlan) -> None:
        try:
            with unit_span(self._tracer, "sync.refresh_flow", attributes={"wiseflow.flow_id": flow.flow_id}):
                refreshed = await run.refresh.fetch_and_store(flow, plan, with_participants=True)
        except (ApiError, *BAD_DATA) as exc:
            if classify(exc) is not Verdict.BLAME_ITEM:
                raise  # about WISEflow as a whole: the run ends
            # This flow's problem (404, 403, a bad page, an item without its id): skip it until its next turn.
            if isinstance(exc, ApiError) and exc.status == 404 and await run.refresh.is_gone(flow.flow_id):
                return
            status, trace_id = (exc.status, exc.trace_id) if isinstance(exc, ApiError) else (None, None)
            await self._flow_failed(flow.flow_id, plan, describe(exc), status, trace_id)
            return
        summary = run.summary
        summary.flows_refreshed += 1
        summary.records += refreshed.participants + refreshed.grades
        summary.changes += refreshed.changed
        summary.refreshed_participants[refreshed.participants] += 1

    async def _flow_failed(
        self, flow_id: int, plan: FlowPlan, reason: str, status: int | None, trace_id: str | None
    ) -> None:
        """Record why the flow's refresh failed and try it again after a poll interval."""
        log.warning(
            "flow refresh failed",
            extra={"event": "sync.flow_failed", "flow_id": flow_id, "status": status, "x_trace_id": trace_id},
        )
        async with self._uow.transaction() as unit:
            retry = planner.plan_after_failure(plan, self._clock.wall(), self._rng, self._policy)
            await unit.flows.save_plans({flow_id: retry})
            await unit.flows.record_error(flow_id, reason)

    async def _finish(self, run: _Run, started: float) -> None:
        summary, tally = run.summary, run.tally
        summary.duration = time.monotonic() - started
        summary.api_calls, summary.pages = tally.total, tally.pages
        s = summary
        counters = RunCounters(s.api_calls, s.pages, s.records, s.changes, s.counts)
        async with self._uow.transaction() as unit:
            await unit.runs.record_requests(summary.run_id, tally.by_route)
            await unit.runs.finish(
                summary.run_id, self._clock.wall(), summary.outcome, counters, summary.reason
            )
        log.info(  # its run_id, as every line of the run has it (`log_fields`)
            "sync run ended",
            extra={
                "event": "sync.run",
                "outcome": summary.outcome,
                "api_calls": summary.api_calls,
                "records": summary.records,
                "changes": summary.changes,
                "flows_refreshed": summary.flows_refreshed,
                "counts": summary.counts.as_json(),  # what it added, changed, removed: numbers only
                "duration_s": round(summary.duration, 3),
                "reason": summary.reason,
            },
        )


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first non-group exception inside `group`."""
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _judge(summary: RunSummary, exc: Exception) -> None:
    """The run's outcome for what ended it (`core.failures`); what no verdict covers propagates."""
    verdict = classify(exc)
    if verdict is Verdict.STOP_AND_WAIT and not needs_operator(exc):  # a Retry-After, maintenance, the breaker
        summary.outcome, summary.reason = "paused", describe(exc)
        summary.retry_after = retry_after(exc)
    elif verdict is not Verdict.RETRY_ITEM_LATER and isinstance(exc, (ServiceError, *BAD_DATA)):
        summary.outcome, summary.reason = "failed", describe(exc)  # refused credentials, a malformed listing
    else:
        raise exc  # our database, or a bug: the loop guard logs it
