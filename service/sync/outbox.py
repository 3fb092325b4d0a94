"""The outbox deliverer: sends queued grade versions to the SIS sink, each until it answers 2xx.

Delivery is at least once with a stable `Idempotency-Key` per grade version: a row is marked delivered
only after the sink's 2xx, so a crash between the two resends it with the same key and the SIS drops the
repeat. Two kinds of failure, told apart by the one error policy (`core.failures.classify`):

- STOP_AND_WAIT, the SIS is unwell (no answer, a redirect, 408, 429, 5xx): the row is retried with
  capped, full-jitter backoff, never before the SIS's `Retry-After`, and the rest of the pass waits for
  it (one probe, not one request per pending row);
- BLAME_ITEM, the SIS refused this record (any other 4xx): the row is retried `max_refusals` times in all, then
  dead-lettered (`wiseflow-sync outbox dead-letters`, `outbox replay`), and the participant's newer
  versions proceed. A refusal never delays other rows: the SIS answered, so it is well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from service.core.backoff import Random, compute_backoff
from service.core.clock import Clock
from service.core.failures import Verdict, classify, describe
from service.core.ports import Sink
from service.core.store_ports import OutboxItem, UnitOfWork
from service.errors import SinkError

log = logging.getLogger("service.outbox")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Backoff between attempts of one row, how often a refused row is tried, and how much at once."""

    base: float = 1.0
    # 300 s: a SIS back from an outage gets its backlog within five minutes.
    cap: float = 300.0
    # A refusal answers the same every time unless someone fixes the SIS or the record; five tries over
    # about half a minute cover a SIS that briefly refuses while it deploys.
    max_refusals: int = 5
    # The longest Retry-After of the SIS we honour; beyond it the SIS is asked again after an hour.
    retry_after_max: float = 3600.0
    batch: int = 100
    concurrency: int = 4


@dataclass(slots=True)
class DeliveryResult:
    """What `deliver_due` did; `next_due` is when the earliest still-pending row becomes due (None: none)."""

    delivered: int = 0
    failed: int = 0  # the SIS was unwell
    refused: int = 0  # the SIS refused a record (retried later, or dead-lettered)
    dead: int = 0  # rows dead-lettered in this pass
    next_due: float | None = None
    retry_at: float | None = None  # the earliest retry of a row that failed in this pass


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
    ) -> None:
        self._uow = uow
        self._sink = sink
        self._clock = clock
        self._rng = rng
        self._policy = policy or DeliveryPolicy()
        self._wake = wake or asyncio.Event()  # `Signals.outbox`: set when rows were queued
        self._lock = asyncio.Lock()

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
            if not items:
                break
            failed_before = result.failed
            async with asyncio.TaskGroup() as group:
                for item in items:
                    group.create_task(self._deliver(item, limit, result, failed_before))
            if result.failed > failed_before:
                break  # the sink is struggling: leave the rest for the next pass rather than hammer it
        async with self._uow.read() as unit:
            result.next_due = await unit.outbox.next_due_at()
        if result.retry_at is not None and result.next_due is not None:
            # The rows a failure left untried wait for the failed row's retry: it probes the SIS for them,
            # so a SIS that is down is asked once per backoff, not once per pending row.
            result.next_due = max(result.next_due, result.retry_at)
        return result

    async def _deliver(
        self, item: OutboxItem, limit: asyncio.Semaphore, result: DeliveryResult, failed_before: int
    ) -> None:
        async with limit:
            if result.failed > failed_before:
                # The SIS failed a delivery of this batch: one that times out would hold every remaining
                # row for its full timeout. Leave them due; the next pass tries again.
                return
            try:
                await self._sink.deliver(item.payload, item.idempotency_key)
            except SinkError as exc:
                if classify(exc) is Verdict.BLAME_ITEM:
                    await self._refused(item, exc, result)
                else:
                    await self._failed(item, exc, result)
                return
            async with self._uow.transaction() as unit:
                await unit.outbox.mark_delivered(item.id, self._clock.wall())
            result.delivered += 1

    async def _failed(self, item: OutboxItem, exc: SinkError, result: DeliveryResult) -> None:
        """The SIS is unwell: retry after the backoff or its Retry-After, whichever is later."""
        result.failed += 1  # first: the batch's other deliveries check it before they start
        delay = self._backoff(item.attempts + 1)
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self._policy.retry_after_max))
        retry_at = self._clock.wall() + delay
        result.retry_at = retry_at if result.retry_at is None else min(result.retry_at, retry_at)
        async with self._uow.transaction() as unit:
            await unit.outbox.mark_failed(item.id, retry_at, describe(exc))
        log.warning(
            "grade delivery failed",
            extra=_fields("outbox.failed", item, exc, retry_in=delay),
        )

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
        delay = self._backoff(refusals)
        async with self._uow.transaction() as unit:
            await unit.outbox.mark_refused(item.id, self._clock.wall() + delay, describe(exc))
        log.warning(
            "grade refused by the SIS",
            extra=_fields("outbox.refused", item, exc, retry_in=delay),
        )

    def _backoff(self, attempt: int) -> float:
        # At least `base`: full jitter alone may draw ~0, and a row must not be asked again in a tight loop.
        policy = self._policy
        return max(policy.base, compute_backoff(attempt, base=policy.base, cap=policy.cap, rng=self._rng))

    async def run(self, idle: float = 5.0) -> None:
        """Deliver forever: after each pass sleep until the next row is due, `idle` at most, or a wake-up."""
        while True:
            result = await self.deliver_due()
            wait = (
                idle if result.next_due is None else max(0.0, min(idle, result.next_due - self._clock.wall()))
            )
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)


def _fields(event: str, item: OutboxItem, exc: SinkError, **more: float) -> dict[str, object]:
    """Log fields of a failed delivery: the status, and the error (a redirect names the configured URL)."""
    return {"event": event, "outbox_id": item.id, "status": exc.status, "error": describe(exc), **more}
