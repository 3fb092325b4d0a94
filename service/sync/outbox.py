"""The outbox deliverer: sends queued grade versions to the SIS sink, each until it answers 2xx.

Delivery is at least once with a stable `Idempotency-Key` per grade version: a row is marked delivered
only after the sink's 2xx, so a crash between the two resends it with the same key and the SIS drops the
repeat. Two kinds of failure, told apart by the one error policy (`core.failures.classify`):

- STOP_AND_WAIT, the SIS is unwell or wrongly set up (no answer, a redirect, 401, 403, 404, 405, 408, a
  413 for a grade's small record, 429, 5xx): no row is to blame and none is ever dead-lettered for it.
  Delivery as a whole pauses, as the WISEflow client's breaker does: a breaker of the SIS (`Breaker`, one
  failure opens it) holds every row, and when its open time is over one row probes the SIS; its success
  resumes delivery at once, its failure pauses again, 1 s doubling to 30 s, or the SIS's `Retry-After`.
  So a SIS that is fixed is delivered to within seconds, whatever the number of rows; the pause is said in
  one log line (`outbox.paused`: the status and the configured URL) and `wiseflow_sink_paused`;
- BLAME_ITEM, the SIS refused this record (400, 409, 422 ...): the row is retried `max_refusals` times in
  all, then dead-lettered (`wiseflow-sync outbox dead-letters`, `outbox replay`), and the participant's
  newer versions proceed. A refusal never delays other rows: the SIS answered, so it is well.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from service.core.backoff import Backoff, Random
from service.core.breaker import Breaker, BreakerPolicy, Permit, State
from service.core.clock import Clock
from service.core.failures import Verdict, classify, describe
from service.core.ports import Sink
from service.core.store_ports import OutboxItem, UnitOfWork
from service.errors import CircuitOpen, SinkError
from service.sync.passes import run_passes

log = logging.getLogger("service.outbox")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Backoff between tries of a refused row and how often it is tried, the probes of an unwell SIS, and
    how much at once."""

    # A refused row's tries: 1 s doubling up to 300 s, never under 1 s: full jitter alone may draw ~0, and
    # a row's few tries must outlast a SIS that refuses for a moment while it deploys, not a millisecond.
    backoff: Backoff = Backoff(base=1.0, cap=300.0, floor=1.0)
    # A refusal answers the same every time unless someone fixes the SIS or the record; five tries over
    # about half a minute cover a SIS that briefly refuses while it deploys.
    max_refusals: int = 5
    # The longest Retry-After of the SIS we honour; beyond it the SIS is asked again after an hour.
    retry_after_max: float = 3600.0
    batch: int = 100
    concurrency: int = 4
    # While the SIS is unwell one row probes it: after 1 s, doubling up to 30 s (unless it gives a
    # Retry-After), so that a SIS that is fixed is delivered to within half a minute.
    probe_base: float = 1.0
    probe_cap: float = 30.0
    # Between passes with nothing due: a wake-up (rows queued) starts one sooner.
    idle_interval: float = 5.0


@dataclass(slots=True)
class DeliveryResult:
    """What `deliver_due` did; `next_due` is when the earliest still-pending row becomes due (None: none)."""

    delivered: int = 0
    failed: int = 0  # the SIS was unwell
    refused: int = 0  # the SIS refused a record (retried later, or dead-lettered)
    dead: int = 0  # rows dead-lettered in this pass
    next_due: float | None = None
    paused: str | None = None  # why delivery is paused at the end of the pass (None: it is not)


class OutboxDeliverer:
    """Delivers due outbox rows; `deliver_due()` until nothing is due, `run()` as a loop for the service."""

    def __init__(
        self,
        uow: UnitOfWork,
        sink: Sink,
        clock: Clock,
        rng: Random,
        policy: DeliveryPolicy | None = None,
        *,
        wake: asyncio.Event | None = None,
        on_pause: Callable[[bool], None] | None = None,
    ) -> None:
        self._uow = uow
        self._sink = sink
        self._clock = clock
        self._rng = rng
        self._policy = policy = policy or DeliveryPolicy()
        self._wake = wake or asyncio.Event()  # `Signals.outbox`: set when rows were queued
        self._lock = asyncio.Lock()
        # One failure opens it: whatever made the SIS fail one row (down, refusing us) concerns them all.
        sis = BreakerPolicy(
            failure_threshold=1,
            open_base=policy.probe_base,
            open_cap=policy.probe_cap,
            pause_max=policy.retry_after_max,
        )
        self._sis = Breaker("SIS", sis, clock)
        self._on_pause = on_pause  # told True when delivery pauses, False when it resumes (the gauge)
        self._pause: tuple[str, int | None, float] | None = None  # why, the status said, since (monotonic)

    async def deliver_due(self) -> DeliveryResult:
        """Deliver the rows due now, batch after batch, until none is due or the SIS is unwell.

        One deliverer at a time per database, across processes too (a `sync --once` next to a running
        service): two would read the same pending rows and send each twice.
        """
        async with self._lock, self._uow.exclusive("outbox"):
            return await self._deliver_due()

    async def _deliver_due(self) -> DeliveryResult:
        result = DeliveryResult()
        limit = asyncio.Semaphore(self._policy.concurrency)
        while True:
            async with self._uow.read() as unit:
                items = await unit.outbox.due(self._clock.wall(), self._policy.batch)
            if self._sis.state is not State.CLOSED:
                items = items[:1]  # paused: one row probes the SIS (when its time has come) for them all
            async with asyncio.TaskGroup() as group:
                for item in items:
                    group.create_task(self._deliver(item, limit, result))
            if not items or self._sis.state is not State.CLOSED:
                break  # nothing left, or the SIS is unwell: the rest waits for the next probe
        async with self._uow.read() as unit:
            result.next_due = await unit.outbox.next_due_at()
        if self._pause is not None and result.next_due is not None:
            # Every row waits for the probe: a SIS that is down is asked once per pause, not once per row.
            result.next_due = max(result.next_due, self._clock.wall() + self._sis.retry_after())
            result.paused = self._pause[0]
        return result

    async def _deliver(self, item: OutboxItem, limit: asyncio.Semaphore, result: DeliveryResult) -> None:
        async with limit:
            try:
                # Taken once a slot is ours: a failure meanwhile (one that timed out, say) paused delivery,
                # and the rows still waiting for a slot must not each wait out the SIS's timeout.
                permit = self._sis.acquire()
            except CircuitOpen:
                return  # paused: the row stays due for the next probe
            try:
                await self._sink.deliver(item.payload, item.idempotency_key)
            except SinkError as exc:
                if classify(exc) is Verdict.BLAME_ITEM:
                    self._answered(permit)  # the SIS answered: it is well
                    await self._refused(item, exc, result)
                else:
                    await self._failed(item, permit, exc, result)
                return
            except BaseException:
                self._sis.release(permit)  # cancelled: a probe's turn goes to the next row
                raise
            self._answered(permit)
            async with self._uow.transaction() as unit:
                await unit.outbox.mark_delivered(item.id, self._clock.wall())
            result.delivered += 1

    def _answered(self, permit: Permit) -> None:
        """The SIS answered well: a probe resumes delivery (said in one line, with how long it paused)."""
        self._sis.record_success(permit)
        if self._pause is not None and self._sis.state is State.CLOSED:
            paused_for = round(self._clock.monotonic() - self._pause[2], 1)
            self._pause = None
            log.info(
                "the SIS answers again: grade delivery resumed",
                extra={"event": "outbox.resumed", "paused_seconds": paused_for},
            )
            if self._on_pause is not None:
                self._on_pause(False)

    async def _failed(self, item: OutboxItem, permit: Permit, exc: SinkError, result: DeliveryResult) -> None:
        """The SIS is unwell: delivery pauses as a whole (the breaker); the row waits for the next probe."""
        result.failed += 1
        self._sis.record_failure(permit, describe(exc), exc.retry_after)
        retry_at = self._clock.wall() + self._sis.retry_after()
        async with self._uow.transaction() as unit:
            await unit.outbox.mark_failed(item.id, retry_at, describe(exc))
        self._say_paused(exc)

    def _say_paused(self, exc: SinkError) -> None:
        """One line when delivery pauses, and again only when the SIS's answer changes (a probe's 401 after
        a 503, say); a probe that fails as the last did is DEBUG. Never a grade or a credential."""
        if self._sis.state is State.CLOSED:
            return  # a row in flight when another's failure paused delivery: already said
        fields: dict[str, object] = {"event": "outbox.paused", "status": exc.status, "error": describe(exc)}
        fields["probe_in"] = round(self._sis.retry_after(), 1)
        if self._pause is not None and self._pause[1] == exc.status:
            log.debug("the SIS is still unwell: grade delivery stays paused", extra=fields)
            return
        since = self._clock.monotonic() if self._pause is None else self._pause[2]
        if self._pause is None and self._on_pause is not None:
            self._on_pause(True)
        self._pause = (describe(exc), exc.status, since)
        level = logging.ERROR if exc.misconfigured else logging.WARNING
        log.log(level, "the SIS cannot take grades: delivery paused, one grade probes it", extra=fields)

    async def _refused(self, item: OutboxItem, exc: SinkError, result: DeliveryResult) -> None:
        """The SIS refused this record: retry it a bounded number of times, then dead-letter it."""
        result.refused += 1
        refusals = item.refusals + 1
        if refusals >= self._policy.max_refusals:
            async with self._uow.transaction() as unit:
                await unit.outbox.mark_dead(item.id, describe(exc))
            result.dead += 1
            log.error(
                "grade refused by the SIS for good: dead-lettered (wiseflow-sync outbox dead-letters)",
                extra=_fields("outbox.dead", item, exc, attempt=refusals),
            )
            return
        delay = self._policy.backoff.delay(refusals, self._rng)
        async with self._uow.transaction() as unit:
            await unit.outbox.mark_refused(item.id, self._clock.wall() + delay, describe(exc))
        log.warning(
            "grade refused by the SIS",
            extra=_fields("outbox.refused", item, exc, retry_in=delay),
        )

    async def run(self) -> None:
        """Deliver pass after pass (`run_passes`): after a wake-up, when the next row is due, or when idle."""
        await run_passes(self.deliver_due, self._wake, self._clock, self._policy.idle_interval)


def _fields(event: str, item: OutboxItem, exc: SinkError, **more: float) -> dict[str, object]:
    """Log fields of a refused delivery: the status, and the error."""
    return {"event": event, "outbox_id": item.id, "status": exc.status, "error": describe(exc), **more}
