"""The admission gate: whether, when and with which credentials a request may leave for WISEflow.

One `Admission` per client owns everything that holds a request back, on one clock (the event loop's,
the clock the rate limiter sleeps on):

- the rate limiter (`limiter.py`): the budget's sliding windows, the shared pause of a 429, and the hold
  of every other caller behind the first request after a pause;
- the saved pause (`pauses.py`): read before each request leaves, written before any later one leaves;
- the circuit breaker (`service.core.breaker`): nothing leaves while it is open; one probe when half open.

A request is admitted as one context, `async with admission.slot(request, credentials) as slot`, in
this order:

1. the breaker is asked (`CircuitOpen` at once: no queueing for a request that cannot go);
2. credentials due for renewal are renewed (the token request takes its own slot, urgent);
3. the limiter grants a turn (FIFO; `urgent` skips the queue, never the budget or the pause);
4. the saved pause is read: a longer one another process saved sends the request back to step 3;
5. the credentials are attached: a token that reached its renewal point while queued is renewed and the
   request queues again, urgent, so its send time stays its admission time;
6. the breaker grants a permit (the single probe when half open).

Inside the context the transport sends, and tells the slot what came back before it logs the answer:
`answered(reply)` applies the pause policy below, `unanswered(reason)` counts a breaker failure. The
context's exit then does, on every path (an answer, an error, a cancellation), what no caller can forget:
a permit nobody judged is released (a probe's place goes to the next caller), and the first request after
a pause settles the limiter, so the callers held behind it go.

The pause policy (what an answer means for everyone, the same for a 429 and a 503):

- a 5xx other than 501 is a breaker failure; a 503's Retry-After opens the breaker for that long;
- a 429 pauses every caller for its Retry-After, else its window's reset, else the backoff of its attempt,
  whichever is longest (the server's wait is a minimum: "Retry-After: 0" must not bring the retries back
  to back); any other answer is a breaker success (a 4xx or a 429 proves the server is up);
- either wait is cut to SYNC_PAUSE_MAX (logged) and saved before `answered` returns: on disk before the
  answer is logged and before any later request leaves;
- the server's RateLimit-* quotas go to the limiter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Protocol

from service.adapters.spans import add_event
from service.core.backoff import Random, RetryPolicy
from service.core.breaker import Breaker, BreakerPolicy, Permit, Transition
from service.core.clock import Clock
from service.core.ports import PauseStore
from service.core.ratebudget import RateBudget
from service.core.retry_after import bounded_pause, parse_quotas, rate_limited_wait
from service.settings import Settings

from .limiter import AsyncRateLimiter, LoopClock
from .pauses import DurablePause
from .records import Reply, Request, route_of

log = logging.getLogger(__name__)


class Attachable(Protocol):
    """Credentials as the gate attaches them (`auth.Credentials`): renewed first, then read when admitted."""

    async def headers(self, request: Request) -> dict[str, str]: ...

    def current(self) -> dict[str, str] | None: ...


class Admission:
    """The one gate every request of a client passes: limiter, saved pause and breaker, on one clock."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        policy: RetryPolicy,
        rng: Random,
        *,
        budget: RateBudget,
        breaker_policy: BreakerPolicy,
        on_transition: Callable[[Transition], None] | None,
        pause_store: PauseStore | None,
        saves_pauses: bool = True,
        on_pause_lifted: Callable[[], None] | None = None,
    ) -> None:
        loop_clock = LoopClock()  # the limiter sleeps on the loop's clock, so the breaker reads it too
        self.limiter = AsyncRateLimiter(budget, max_hold=settings.retry_after_max, clock=loop_clock)
        self._gate = self.limiter.gate  # the budget's windows, the server's quotas and the shared pause
        # The breaker honours a 503's Retry-After up to the same SYNC_PAUSE_MAX as a 429's.
        policy_503 = replace(breaker_policy, pause_max=settings.pause_max)
        self.breaker = Breaker(settings.api_url, policy_503, loop_clock, on_transition)
        self.pauses = DurablePause(
            pause_store, clock, self.limiter, self.breaker, on_pause_lifted, writes=saves_pauses
        )
        self._clock = clock  # wall time: Retry-After dates and RateLimit-Reset
        self._pause_max = settings.pause_max
        self._policy = policy
        self._rng = rng
        self.paused_seconds = 0.0  # how much 429s lengthened the shared pause, in all (a metric)

    @asynccontextmanager
    async def slot(self, request: Request, credentials: Attachable | None = None) -> AsyncIterator[Slot]:
        """Admit `request` (steps 1-6 of the module docstring); settle and release on leaving, always."""
        self.breaker.check()
        if credentials is not None:
            await credentials.headers(request)  # a renewal due now goes first, outside the queue
        queued = time.perf_counter()
        probe, attached = await self._turn(request, credentials)
        slot: Slot | None = None
        try:
            slot = Slot(self, self.breaker.acquire(), attached, time.perf_counter() - queued)
            yield slot
        finally:
            if slot is not None:
                slot.close()
            # A 429 on this first request after a pause began a new pause: that one holds everyone instead.
            if probe and self._gate.pause_remaining() == 0.0:
                self.limiter.settle()

    async def _turn(self, request: Request, credentials: Attachable | None) -> tuple[bool, dict[str, str]]:
        """Steps 3-5: a limiter turn, the saved pause read, the credentials attached: (probe, headers)."""
        urgent = request.urgent
        while True:
            probe = await self.limiter.acquire(request.method, request.path, request.attempt, urgent=urgent)
            adopted, attached = False, None
            try:
                # A pause WISEflow just asked for is on disk before anything is compared (`check` waits).
                adopted = await self.pauses.check()
                if not adopted:
                    attached = {} if credentials is None else credentials.current()
            finally:
                if probe and attached is None:
                    self.limiter.settle()  # this turn is given back: those held behind it go round again
            if attached is not None:
                return probe, attached
            if not adopted:
                assert credentials is not None  # noqa: S101 - only a token can age
                await credentials.headers(request)
                urgent = True  # it has waited its turn once

    async def account(self, permit: Permit, reply: Reply) -> None:
        """The pause policy: what `reply` means for the breaker, the limiter and the saved pause."""
        self._gate.observe(parse_quotas(reply.headers, self._clock.wall()))
        where = f"{reply.method} {route_of(reply.path)}"
        if reply.status >= 500 and reply.status != 501:
            with_wait = None
            if reply.status == 503 and reply.retry_after is not None:
                with_wait = self._bounded(reply, reply.retry_after)
            self.breaker.record_failure(permit, f"{reply.status} answer", with_wait)
            if with_wait is not None:
                await self.pauses.record(with_wait, f"503 with Retry-After on {where}")
        else:
            self.breaker.record_success(permit)
        if reply.status == 429:
            asked = rate_limited_wait(reply.headers, self._clock.wall())
            floor = self._policy.backoff.delay(reply.attempt, self._rng)
            pause = self._bounded(reply, max(asked or 0.0, floor))
            before = self._gate.pause_remaining()
            self.limiter.pause(pause)
            # Concurrent 429s overlap: only what this one added to the pause counts.
            self.paused_seconds += max(0.0, self._gate.pause_remaining() - before)
            add_event("wiseflow.pause", reason="429", seconds=round(pause, 3))
            await self.pauses.record(pause, f"429 on {where}")

    def _bounded(self, reply: Reply, asked: float) -> float:
        """`asked` up to SYNC_PAUSE_MAX, logged beyond it."""
        if asked > self._pause_max:
            log.warning(
                "WISEflow asked for a pause longer than SYNC_PAUSE_MAX: waiting the maximum",
                extra={
                    "event": "wiseflow.pause_capped",
                    "x_trace_id": reply.trace_id,
                    "status": reply.status,
                    "asked": round(asked, 3),
                    "pause_max": self._pause_max,
                },
            )
        return bounded_pause(asked, self._pause_max)

    def wait_after(self, reply: Reply) -> float | None:
        """How long `reply` holds callers: its Retry-After; for a 429 the shared pause it set, if longer."""
        if reply.status == 429:
            return max(reply.retry_after or 0.0, self._gate.pause_remaining())
        return reply.retry_after


class Slot:
    """One admitted request: the credentials to attach, and where the transport says what came back."""

    __slots__ = ("_admission", "_judged", "_permit", "headers", "waited")

    def __init__(self, admission: Admission, permit: Permit, headers: dict[str, str], waited: float) -> None:
        self.headers = headers  # attached when admitted (a 401's `invalidate` compares them)
        self.waited = waited  # seconds from queueing to admission (a span event when not negligible)
        self._admission = admission
        self._permit = permit
        self._judged = False

    async def answered(self, reply: Reply) -> None:
        """WISEflow answered: apply the pause policy; a pause it asks for is saved when this returns."""
        self._judged = True
        await self._admission.account(self._permit, reply)

    def unanswered(self, reason: str) -> None:
        """No answer came (a timeout, a refused connection): a breaker failure."""
        self._judged = True
        self._admission.breaker.record_failure(self._permit, reason)

    def close(self) -> None:
        """Leaving the slot: a permit neither answered nor failed (cancelled) frees a probe's place."""
        if not self._judged:
            self._admission.breaker.release(self._permit)
