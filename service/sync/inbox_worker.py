"""The inbox worker: turns stored webhook events into targeted refreshes, apart from the request.

One pass reads the pending events in order of arrival and, for each flow in that order (a few flows at a
time):

- an event whose flow has an earlier event still waiting for its retry is held back (order per flow): the
  store's `pending` selects only due events before their flow's first waiting one, so a batch never fills
  up with events that cannot move while other flows' wait;
- an event of a kind already refreshed in this pass is covered by that refresh (it arrived before it);
  so is every other pending event of that flow and kind received before the refresh began, beyond this
  pass's batch too: a burst of thousands of events for one flow costs one refresh;
- an event that arrived before an earlier pass's refresh of its flow and kind began is *superseded*: that
  refresh fetched a state that holds its change (WISEflow sends an event after its change), so nothing is
  fetched. Judged by time (`unit.inbox.refreshed_at`), never by comparing sequence numbers: a sender that
  numbers from 1 again, or a sequence far ahead, must not make real changes look old;
- otherwise the flow's refresh is called (`sync/refresh.py`, directly); when it queued grades for the SIS
  the worker says so (`Signals.queued`) and the deliverer looks at once. Events never carry data that is
  applied: a refresh fetches the flow's current state from the API, so an out-of-order event cannot roll
  anything back.

What a failure means comes from `core.failures.classify`. An event's own failure (BLAME_ITEM) retries
with capped, jittered backoff; after `max_attempts` it is dead (see `wiseflow-sync inbox dead-letters` /
`inbox replay`). STOP_AND_WAIT (breaker open, a rate pause, WISEflow unavailable, credentials refused) is
not the event's fault: the pass stops and every due event waits, one idle interval at a time, without
burning an attempt, however long it lasts. RETRY_ITEM_LATER (our database) leaves the event as it was.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final, Protocol

from opentelemetry.trace import SpanKind, Tracer

from service.adapters.spans import NO_TRACER, receipt_links, unit_span
from service.core.backoff import Backoff, Random
from service.core.clock import Clock
from service.core.failures import Verdict, classify, describe, retry_after
from service.core.store_ports import Cover, InboxRow, UnitOfWork
from service.core.webhook_events import Refresh, events_for, refresh_for
from service.core.webhook_figures import WebhookFigures
from service.sync.passes import run_passes
from service.sync.signals import Signals

log = logging.getLogger("service.inbox")


class FlowRefresher(Protocol):
    """What the worker and catch-up call (`FlowRefresh`); each may raise ApiError or CircuitOpen."""

    async def refresh_flow(self, flow_id: int) -> None:
        """Fetch the flow (state, dates) again, store it, and re-plan its polling."""
        ...

    async def refresh_grades(self, flow_id: int, *, with_participants: bool) -> int:
        """Fetch the flow's grades (and participants: submissions, assignments) again, store new grade
        versions with their outbox rows; the rows queued."""
        ...


# Events a cover marks done in one transaction (see `InboxWorker._apply`).
COVER_CHUNK: Final = 1000


@dataclass(frozen=True, slots=True)
class WorkerPolicy:
    """How failed events are retried: `max_attempts` in all, with `backoff` between them."""

    max_attempts: int = 8
    # 15 min cap: WISEflow's own redelivery interval; waiting longer between our attempts buys nothing.
    # No floor: every attempt is counted (`max_attempts`), so a draw near 0 cannot become a tight loop, and
    # the refresh it retries is paced by the client's limiter and breaker anyway.
    backoff: Backoff = Backoff(base=2.0, cap=900.0)
    batch: int = 500
    idle_interval: float = 5.0
    # Flows refreshed at once; events of one flow stay sequential. The client's limiter is the real brake.
    concurrency: int = 4


@dataclass(slots=True)
class _PassMarks:
    """What a pass marks done at its end: (flow, events, refresh began) covers, and superseded rows."""

    covered: list[Cover] = field(default_factory=list)
    done: list[InboxRow] = field(default_factory=list)


@dataclass(slots=True)
class PassResult:
    """What one pass did, and when the next one is worth running (None: only when woken)."""

    processed: int = 0
    failed: int = 0
    dead: int = 0
    next_due: float | None = None


class InboxWorker:
    """Processes the inbox; `run()` loops until cancelled, `run_once()` does one pass (tests drive it)."""

    def __init__(
        self,
        uow: UnitOfWork,
        refresher: FlowRefresher,
        signals: Signals,
        clock: Clock,
        policy: WorkerPolicy | None = None,
        figures: WebhookFigures | None = None,
        rng: Random | None = None,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self.uow = uow
        self.refresher = refresher
        self.signals = signals
        self.clock = clock
        self.policy = policy or WorkerPolicy()
        self.figures = figures or WebhookFigures()
        self._rng = rng or random.SystemRandom()
        self._tracer = tracer  # each refresh's CONSUMER span, `webhook.process`
        self._wake = signals.inbox  # set by `Signals.stored` and `Signals.pause_lifted`

    async def run(self) -> None:
        """Pass after pass (`run_passes`): after a wake-up, when the next event falls due, or when idle."""
        await run_passes(self._pass, self._wake, self.clock, self.policy.idle_interval)

    async def _pass(self) -> PassResult:
        """`run_once` for the loop: a pass that failed (the database) is tried again when idle."""
        try:
            return await self.run_once()
        except Exception as exc:  # the database hiccupped: keep the loop alive, try again shortly
            log.warning("inbox pass failed", extra={"event": "inbox.pass_failed", "error": describe(exc)})
            return PassResult()

    async def run_once(self) -> PassResult:
        """One pass over the pending events (see the module docstring)."""
        now = self.clock.wall()
        async with self.uow.read() as unit:
            rows = await unit.inbox.pending(now, self.policy.batch)
        result = PassResult()
        by_flow: dict[int | None, list[InboxRow]] = defaultdict(list)
        for row in rows:
            by_flow[row.flow_id].append(row)
        marks = _PassMarks()
        try:
            stop = await self._process_flows(list(by_flow.values()), now, result, marks)
        finally:
            await self._apply(marks, result)
        if stop is not None:
            # At most one idle interval: a half-open breaker reports its probe's whole timeout, but the probe
            # may succeed at once; looking again costs nothing (an open breaker answers in-process).
            asked = retry_after(stop)
            wait = (
                self.policy.idle_interval if asked is None else min(max(asked, 0.1), self.policy.idle_interval)
            )
            until = self.clock.wall() + wait
            await self._defer_rest(by_flow, until)
            result.next_due = until
            log.info(
                "inbox waits: WISEflow cannot be used now",
                extra={"event": "inbox.deferred", "seconds": asked, "error": describe(stop)},
            )
            return result
        if len(rows) >= self.policy.batch and (result.processed or result.failed):
            result.next_due = now  # a full batch that moved: more may be due at once
        async with self.uow.read() as unit:  # a due event this pass left is looked at when idle
            upcoming = await unit.inbox.next_retry_at(now)
        if upcoming is not None:
            result.next_due = _earliest(result.next_due, upcoming)
        return result

    async def _process_flows(
        self, flows: list[list[InboxRow]], now: float, result: PassResult, marks: _PassMarks
    ) -> Exception | None:
        """Each flow's events in order, `concurrency` flows at a time; a STOP_AND_WAIT stops the pass."""
        gate = asyncio.Semaphore(self.policy.concurrency)
        stop: Exception | None = None

        async def one(rows: list[InboxRow]) -> None:
            nonlocal stop
            async with gate:
                if stop is not None:
                    return  # the API said wait: do not start another flow
                try:
                    await self._process_flow(rows, now, result, marks)
                except Exception as exc:
                    if classify(exc) is not Verdict.STOP_AND_WAIT:
                        raise
                    stop = stop or exc

        await asyncio.gather(*(one(rows) for rows in flows))
        return stop

    async def _process_flow(
        self, rows: list[InboxRow], now: float, result: PassResult, marks: _PassMarks
    ) -> None:
        done: list[InboxRow] = []
        refreshed: dict[Refresh, float] = {}  # each refresh kind done in this pass, and when it began
        try:
            await self._walk_flow(rows, now, result, done, refreshed)
        finally:
            # Also when the pass stops on an open breaker. Every row of this pass was received before any of
            # its refreshes began, so the rows of a refreshed kind are among those the cover marks; `done`
            # keeps the superseded ones. Written by `_apply` at the end of the pass.
            flow_id = rows[0].flow_id
            if flow_id is not None:
                marks.covered += [(flow_id, events_for(kind), began) for kind, began in refreshed.items()]
            marks.done += [r for r in done if refresh_for(r.event) not in refreshed]

    async def _walk_flow(
        self,
        rows: list[InboxRow],
        now: float,
        result: PassResult,
        done: list[InboxRow],
        refreshed: dict[Refresh, float],
    ) -> None:
        for row in rows:  # due, and not behind a waiting event of their flow (`unit.inbox.pending`)
            kind = refresh_for(row.event)
            if kind is None or row.flow_id is None:
                await self._fail(row, "unhandled_event", now, result, final=True)
                continue
            if kind not in refreshed and not await self._superseded(row, kind):
                began = self.clock.wall()
                try:
                    # A CONSUMER span linked to the receipts (SERVER spans) of the events this refresh answers.
                    covered = [r.receipt for r in rows if refresh_for(r.event) is kind]
                    attributes = {"webhook.sequence": row.sequence, "wiseflow.flow_id": row.flow_id}
                    links = receipt_links(covered)
                    with unit_span(
                        self._tracer,
                        "webhook.process",
                        kind=SpanKind.CONSUMER,
                        attributes=attributes,
                        links=links,
                    ):
                        await self._refresh(kind, row.flow_id)
                except Exception as exc:
                    verdict = classify(exc)
                    if verdict is Verdict.STOP_AND_WAIT:
                        raise  # not this event's fault: the pass stops and every event waits
                    if verdict is Verdict.RETRY_ITEM_LATER:  # ours (the database): no attempt is counted
                        result.next_due = _earliest(result.next_due, now + self.policy.idle_interval)
                    else:
                        await self._fail(row, describe(exc), now, result, final=False)
                    return  # keep the flow's order: the rest waits for this one
                refreshed[kind] = began
            done.append(row)

    async def _superseded(self, row: InboxRow, kind: Refresh) -> bool:
        """True when a refresh of the row's flow and kind began after the row arrived (it holds the change)."""
        assert row.flow_id is not None  # noqa: S101 - checked by the caller
        async with self.uow.read() as unit:
            began = await unit.inbox.refreshed_at(row.flow_id, events_for(kind))
        if began is not None and began >= row.received_at:
            self.figures.superseded += 1
            log.info(
                "webhook answered by a refresh that began after it arrived",
                extra={"event": "inbox.superseded", "sequence": row.sequence, "flow_id": row.flow_id},
            )
            return True
        return False

    async def _refresh(self, kind: Refresh, flow_id: int) -> None:
        """The refresh `kind` asks for; grades it queued wake the deliverer (the webhook's path to the SIS)."""
        if kind is Refresh.FLOW:
            await self.refresher.refresh_flow(flow_id)
        else:
            with_participants = kind is Refresh.PARTICIPANTS
            self.signals.queued(
                await self.refresher.refresh_grades(flow_id, with_participants=with_participants)
            )

    async def _mark_done(self, rows: list[InboxRow], result: PassResult) -> None:
        if not rows:
            return
        done_at = self.clock.wall()
        async with self.uow.transaction() as unit:
            await unit.inbox.mark_done([row.id for row in rows], done_at)
        for row in rows:
            self.figures.record_lag(done_at - row.received_at)
        result.processed += len(rows)

    async def _apply(self, marks: _PassMarks, result: PassResult) -> None:
        """The pass's marks: its refreshes recorded, the events they answer marked done in transactions of at
        most `COVER_CHUNK` events, then the superseded rows.

        Short transactions, not one for the pass: the receiver's group commit waits for the writer while
        one runs, and a pass under a steady stream covers thousands of events (measured: one transaction
        for the pass held the writer up to 80 ms, 1,000 events about 5 ms). An fsync each is cheap beside.
        """
        if marks.covered:
            async with self.uow.transaction() as unit:
                await unit.inbox.record_refreshes(marks.covered)
            while True:
                done_at = self.clock.wall()
                async with self.uow.transaction() as unit:
                    received = await unit.inbox.mark_answered(done_at, COVER_CHUNK)
                for received_at in received:
                    self.figures.record_lag(done_at - received_at)
                result.processed += len(received)
                if len(received) < COVER_CHUNK:
                    break
        await self._mark_done(marks.done, result)

    async def _fail(self, row: InboxRow, error: str, now: float, result: PassResult, *, final: bool) -> None:
        attempt = row.attempts + 1
        retry_at = now + self.policy.backoff.delay(attempt, self._rng)
        limit = attempt if final else self.policy.max_attempts
        async with self.uow.transaction() as unit:
            dead = await unit.inbox.mark_failed([row.id], error, retry_at, limit)
        self.figures.failures += 1
        result.failed += 1
        context = {
            "event_id": row.id,
            "sequence": row.sequence,
            "webhook_event": row.event,
            "flow_id": row.flow_id,
            "attempt": attempt,
        }
        if dead:
            self.figures.dead_lettered += 1
            result.dead += 1
            log.warning("webhook event dead-lettered", extra={"event": "inbox.dead", "error": error, **context})
        else:
            result.next_due = _earliest(result.next_due, retry_at)
            log.info(
                "webhook event failed; will retry", extra={"event": "inbox.retry", "error": error, **context}
            )

    async def _defer_rest(self, by_flow: dict[int | None, list[InboxRow]], until: float) -> None:
        """Push every still-pending event of this pass to `until`, without counting an attempt."""
        event_ids = [row.id for rows in by_flow.values() for row in rows]
        async with self.uow.transaction() as unit:
            await unit.inbox.defer(event_ids, until)


def _earliest(current: float | None, candidate: float) -> float:
    return candidate if current is None else min(current, candidate)
