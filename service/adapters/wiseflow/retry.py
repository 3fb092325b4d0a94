"""One API call: authentication, the single 401 replay, and retries of safe requests.

Why not stamina or tenacity (both well kept; stamina >= 25.2 even takes a wait from its hook): the waits
here are not per call. A 429 pauses *every* caller through the shared limiter, so the retry itself must
not sleep again; a 503 with Retry-After opens the shared breaker, and the retry has to come back as that
breaker's single probe or fail fast; a Retry-After over the maximum must end the call at once with a
typed error carrying the wait; and a 401 replay is not a retry at all (it does not spend an attempt).
Expressing those through a decorator's hooks would hide the loop's five decisions in callbacks; the loop
below is short, reads top to bottom, and its policy parts (backoff, Retry-After, classification) are the
pure, separately tested functions of `service.core`.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from service.adapters.spans import add_event
from service.core.backoff import Random, RetryPolicy, is_retryable_status, is_safe_request
from service.core.clock import Clock
from service.errors import ApiError, ApiUnavailable, AuthError, RateLimited

from .auth import Credentials
from .door import Door
from .records import Reply, Request, error_for


class Caller:
    """Makes calls with the retry policy; shared by every caller through the one client."""

    def __init__(
        self, door: Door, credentials: Credentials, policy: RetryPolicy, clock: Clock, rng: Random
    ) -> None:
        self._door = door
        self._credentials = credentials
        self._policy = policy
        self._clock = clock
        self._rng = rng
        self.recoveries = 0  # 401 answers cured by a new token and one replay (a metric)

    async def call(self, request: Request) -> Reply:
        """A 2xx `Reply`, or the `ApiError`/`CircuitOpen` that ended the call (within the call deadline).

        `request` is the first attempt; each retry is the same request with the next `attempt`.
        """
        safe = is_safe_request(request.method, request.path)
        deadline = self._clock.monotonic() + self._policy.deadline
        attempt = 1
        try:
            async with asyncio.timeout(self._policy.deadline):
                while True:
                    outcome = await self._attempt(replace(request, attempt=attempt))
                    if isinstance(outcome, Reply):
                        return outcome
                    wait = self._wait_before_retry(outcome, safe, attempt, deadline)
                    add_event(
                        "wiseflow.retry", attempt=attempt, status=outcome.status or 0, wait_s=round(wait, 3)
                    )
                    await asyncio.sleep(wait)
                    attempt += 1
        except TimeoutError:
            raise ApiUnavailable(
                f"call deadline of {self._policy.deadline:g}s exceeded",
                method=request.method,
                path=request.path,
                attempt=attempt,
            ) from None

    async def _attempt(self, request: Request) -> Reply | ApiError:
        """One attempt (plus the one replay after a 401): the 2xx reply, or the retryable error to judge."""
        try:
            reply, used = await self._door.send(request, self._credentials)
            if reply.status == 401 and self._credentials.can_refresh:
                self._credentials.invalidate(used)
                reply, _ = await self._door.send(request, self._credentials)
                self.recoveries += reply.ok
        except (RateLimited, ApiUnavailable) as exc:  # no answer, a limiter pause, a failed token request
            return exc
        if reply.ok:
            return reply
        # For a 429: the shared pause the gate set (Retry-After, reset or backoff), not only the header.
        error = error_for(reply, self._door.admission.wait_after(reply))
        if isinstance(error, RateLimited | ApiUnavailable):
            return error
        raise error  # 4xx other than 408/429 (and a 401 twice): asking again would get the same answer

    def _wait_before_retry(self, error: ApiError, safe: bool, attempt: int, deadline: float) -> float:
        """Seconds to wait before the next attempt, or raise `error` when there is to be none."""
        retry_after: float | None = getattr(error, "retry_after", None)
        if retry_after is not None and retry_after > self._policy.retry_after_max:
            raise error  # the scheduler defers the work: the error carries the wait
        retryable = error.status is None or is_retryable_status(error.status)
        if not safe or not retryable or attempt >= self._policy.attempts or isinstance(error, AuthError):
            raise error
        if isinstance(error, RateLimited):
            wait = 0.0  # the shared limiter already holds every caller, this one included, until the pause ends
            needed = retry_after or 0.0
        else:
            # Retry-After is a minimum: "0" must not turn the retries into a hot loop.
            wait = max(retry_after or 0.0, self._policy.backoff.delay(attempt, self._rng))
            needed = wait
        if self._clock.monotonic() + needed > deadline:
            raise error
        return wait
