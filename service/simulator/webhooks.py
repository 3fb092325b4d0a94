"""Webhook delivery with WISEflow's semantics: at-least-once, duplicates, redelivery, loss and disorder.

Every event gets one sequence number; every delivery call gets its own id (a uuid4), so a duplicate or a
redelivery carries a new id and the same sequence. A non-2xx answer, a timeout or a connection error is
retried at the scenario's `redelivery_interval` (the config's until a scenario changes it) until
`max_attempts` calls were made. `drop_rate` loses an event for a target entirely (the receiver's fallback
polling must notice); `duplicate_rate` sends it twice; `reorder` shuffles a batch and sends its
deliveries concurrently after random short delays. The scenario's `webhook_*` keys make a delivery depart
from the assumed format (another signature header or secret, fields left out, a shifted timestamp).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson

from service.core.clock import Clock
from service.core.signatures import (
    STANDARD_ID_HEADER,
    STANDARD_SIGNATURE_HEADER,
    STANDARD_TIMESTAMP_HEADER,
    sign_standard,
    sign_wiseflow,
)
from service.simulator.config import SimConfig
from service.simulator.scenario import Scenario
from service.simulator.world import Json

log = logging.getLogger(__name__)
# With reorder on, each delivery waits a random delay up to this long, so later events may overtake.
REORDER_WINDOW_S: Final = 0.2
DELIVERY_LOG_SIZE: Final = 10_000


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how one event is delivered."""

    url: str
    secret: str
    scheme: str
    signature_header: str
    subscription_id: int | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One webhook event: its sequence number, type and subject."""

    sequence: int
    event: str
    flow_id: int | None
    participant_id: int | None


@dataclass(frozen=True, slots=True)
class Job:
    """One delivery attempt to make."""

    target: Target
    event: Event
    attempt: int


def sign_headers(
    target: Target, delivery_id: str, timestamp: int, body: bytes, header: str | None = None
) -> dict[str, str]:
    """The signature headers of one delivery in the target's scheme; `header` puts the signature elsewhere."""
    headers = {"Content-Type": "application/json", "User-Agent": "WISEflow-Simulator/1.0"}
    if target.scheme == "standard":
        headers[STANDARD_ID_HEADER] = delivery_id
        headers[STANDARD_TIMESTAMP_HEADER] = str(timestamp)
        signature = sign_standard(target.secret, delivery_id, timestamp, body)
        headers[header or STANDARD_SIGNATURE_HEADER] = signature
    else:
        headers[header or target.signature_header] = sign_wiseflow(target.secret, body)
    return headers


def event_body(delivery_id: str, event: Event, timestamp: int, omit: tuple[str, ...] = ()) -> dict[str, Any]:
    """One delivery's JSON body, without the fields a scenario leaves out (dotted names are in `data`)."""
    data = {"flowId": event.flow_id, "participantId": event.participant_id}
    for name in omit:
        if name.startswith("data."):
            data.pop(name.removeprefix("data."), None)
    payload: dict[str, Any] = {
        "id": delivery_id,
        "sequence": event.sequence,
        "event": event.event,
        "timestamp": timestamp,
        "data": data,
    }
    for name in omit:
        payload.pop(name, None)
    return payload


class Dispatcher:
    """Queues events for targets and delivers them in the background; `start` and `stop` own its tasks."""

    def __init__(self, config: SimConfig, scenario: Scenario, clock: Clock, rng: random.Random) -> None:
        self._config = config
        self._scenario = scenario
        self._clock = clock
        self._rng = rng
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.log: deque[Json] = deque(maxlen=DELIVERY_LOG_SIZE)
        # Jobs queued, in flight or waiting for a redelivery: 0 means every event is settled (delivered,
        # dropped or out of attempts), so a test can tell "nothing more will arrive" without sleeping.
        self.outstanding = 0

    async def start(self) -> None:
        """Open the HTTP session and start the delivery worker."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._config.delivery_timeout)
        )
        self._spawn(self._worker())

    async def stop(self) -> None:
        """Cancel the worker, pending redeliveries and in-flight sends; close the session."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    def emit(self, events: list[Event], targets: list[tuple[Target, frozenset[str] | None]]) -> None:
        """Queue `events` for every target subscribed to them, with loss and duplicates as configured."""
        jobs: list[Job] = []
        for event in events:
            for target, subscribed in targets:
                if subscribed is not None and event.event not in subscribed:
                    continue
                if self._rng.random() < self._scenario.drop_rate:
                    self._record(target, event, None, 0, "dropped", None)
                    continue
                copies = 2 if self._rng.random() < self._scenario.duplicate_rate else 1
                jobs.extend(Job(target, event, 1) for _ in range(copies))
        if self._scenario.reorder:
            self._rng.shuffle(jobs)
        self.outstanding += len(jobs)
        for job in jobs:
            self._queue.put_nowait(job)

    def send_once(self, target: Target, event: Event) -> None:
        """Queue one delivery with no loss and no duplicate (the subscription test event)."""
        self.outstanding += 1
        self._queue.put_nowait(Job(target, event, 1))

    async def _worker(self) -> None:
        """Deliver queued jobs: in order when calm, concurrently after random delays when reordering."""
        while True:
            job = await self._queue.get()
            if self._scenario.reorder:
                self._spawn(self._deliver(job, self._rng.uniform(0.0, REORDER_WINDOW_S)))
            else:
                await self._deliver(job, 0.0)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, job: Job, delay: float) -> None:
        """Make one attempt; schedule the next one unless it succeeded or attempts are exhausted."""
        if delay:
            await asyncio.sleep(delay)
        status, outcome = await self._post(job)
        if outcome != "delivered" and job.attempt < self._config.max_attempts:
            self._spawn(self._requeue_later(Job(job.target, job.event, job.attempt + 1)))
        else:
            self.outstanding -= 1

    async def _requeue_later(self, job: Job) -> None:
        """Put a redelivery back in the queue after the redelivery interval."""
        await asyncio.sleep(self._scenario.redelivery_interval)
        self._queue.put_nowait(job)

    async def _post(self, job: Job) -> tuple[int | None, str]:
        """POST one signed delivery; returns the status (None without an answer) and the outcome."""
        assert self._session is not None  # noqa: S101 - start() runs before any delivery
        delivery_id = str(uuid.uuid4())
        scenario = self._scenario
        timestamp = int(self._clock.wall() + scenario.webhook_timestamp_offset)
        ev = job.event
        body = orjson.dumps(event_body(delivery_id, ev, timestamp, scenario.webhook_omit))
        try:
            target = job.target
            if scenario.webhook_signing_secret is not None:
                target = dataclasses.replace(target, secret=scenario.webhook_signing_secret)
            headers = sign_headers(target, delivery_id, timestamp, body, scenario.webhook_signature_header)
            async with self._session.post(job.target.url, data=body, headers=headers) as resp:
                await resp.read()
                status: int | None = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            # ValueError: an unusable URL or an undecodable whsec_ secret: a failed attempt, never a crash.
            self._record(job.target, ev, delivery_id, job.attempt, f"error:{type(exc).__name__}", None)
            return None, "error"
        outcome = "delivered" if status is not None and 200 <= status < 300 else "failed"
        self._record(job.target, ev, delivery_id, job.attempt, outcome, status)
        return status, outcome

    def _record(
        self,
        target: Target,
        event: Event,
        delivery_id: str | None,
        attempt: int,
        outcome: str,
        status: int | None,
    ) -> None:
        """Keep a line of the delivery log (`GET /_sim/deliveries`)."""
        self.log.append(
            {
                "time": self._clock.wall(),
                "id": delivery_id,
                "sequence": event.sequence,
                "event": event.event,
                "url": target.url,
                "subscriptionId": target.subscription_id,
                "attempt": attempt,
                "status": status,
                "outcome": outcome,
            }
        )
