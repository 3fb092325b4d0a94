"""`WiseflowClient`: the one object through which the whole process reaches WISEflow (`WiseflowApi`).

Composition: `Admission` (limiter + saved pause + breaker) and `Transport` (headers, timeouts, logs, spans,
journal), joined by the `Door` every request passes <- `Caller` (auth, 401 replay, retries) <-
`WiseflowEndpoints` (api.py: endpoints, envelopes, pagination), which this class is, owning the parts.
Create one per process and share it (the composition root's factory, `service.clients`, does): the gate
inside it is what makes "a 429 pauses everyone" and "while OPEN nothing is sent" true for every loop and
handler, and a sync run's `counting` view shares it too. At startup `client.pauses.restore()` holds every
caller for what is left of a pause an earlier process saved.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from types import TracebackType
from typing import Self

import aiohttp
from opentelemetry import trace

from service.adapters.spans import add_event
from service.core.backoff import Random, RetryPolicy
from service.core.breaker import BreakerPolicy, Transition
from service.core.clock import Clock, SystemClock
from service.core.ports import PauseStore
from service.core.ratebudget import RateBudget
from service.settings import Settings

from .admission import Admission
from .api import WiseflowEndpoints
from .auth import ApiKeyAuth, Credentials, OAuthTokens
from .door import Door
from .records import OnRequest
from .retry import Caller
from .transport import Transport, log


def log_transition(transition: Transition) -> None:
    """One WARNING line per breaker transition, with its reason; an event on the current span."""
    add_event(
        "wiseflow.breaker",
        from_state=transition.source.value,
        to_state=transition.target.value,
        reason=transition.reason,
        retry_after=round(transition.retry_after, 3),
    )
    log.warning(
        "WISEflow circuit %s -> %s",
        transition.source.value,
        transition.target.value,
        extra={
            "event": "wiseflow.breaker",
            "base_url": transition.name,
            "from_state": transition.source.value,
            "to_state": transition.target.value,
            "reason": transition.reason,
            "retry_after": round(transition.retry_after, 3),
        },
    )


class WiseflowClient(WiseflowEndpoints):
    """The WISEflow API client: OAuth or x-api-key, shared rate budget, breaker, retries, pagination."""

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
        *,
        on_request: OnRequest | None = None,
        budget: RateBudget | None = None,
        breaker_policy: BreakerPolicy | None = None,
        on_transition: Callable[[Transition], None] = log_transition,
        auth_retry_base: float = 30.0,
        tracer: trace.Tracer | None = None,
        pause_store: PauseStore | None = None,
        saves_pauses: bool = True,
        on_pause_lifted: Callable[[], None] | None = None,
    ) -> None:
        settings.require_api_credentials()
        self.settings = settings
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._session = session
        self._owns_session = session is None
        self.policy = RetryPolicy.from_settings(settings)
        budget = budget or RateBudget(per_second=settings.rate_per_second, per_minute=settings.rate_per_minute)
        self.admission = Admission(
            settings,
            self._clock,
            self.policy,
            self._rng,
            budget=budget,
            breaker_policy=breaker_policy or BreakerPolicy(),
            on_transition=on_transition,
            # Where a pause WISEflow asks for is saved before the next request leaves (None: memory only).
            pause_store=pause_store,
            saves_pauses=saves_pauses,
            on_pause_lifted=on_pause_lifted,  # told when an operator's clear lifts a pause held
        )
        # The gate's parts, named for the loops and figures that read them (the gate is what uses them).
        self.limiter = self.admission.limiter
        self.breaker = self.admission.breaker
        self.pauses = self.admission.pauses
        self.transport = Transport(settings, self._clock, self._get_session, on_request, tracer)
        door = Door(self.admission, self.transport)
        self.credentials: Credentials
        if settings.uses_oauth:
            self.credentials = OAuthTokens(settings, door, self._clock, retry_base=auth_retry_base)
        else:
            assert settings.api_key is not None  # noqa: S101 - require_api_credentials() checked it
            self.credentials = ApiKeyAuth(settings.api_key.reveal())
        super().__init__(Caller(door, self.credentials, self.policy, self._clock, self._rng))

    @property
    def calls(self) -> int:
        """Requests that left the process so far (token requests included)."""
        return self.transport.calls

    @property
    def token_requests(self) -> int:
        """OAuth token requests sent so far (0 with a static key)."""
        return self.credentials.fetches if isinstance(self.credentials, OAuthTokens) else 0

    @property
    def auth_recoveries(self) -> int:
        """401 answers cured by a new token and one replay."""
        return self._caller.recoveries

    @property
    def paused_seconds(self) -> float:
        """Seconds the shared pause was lengthened by 429s, in all."""
        return self.admission.paused_seconds

    async def __aenter__(self) -> Self:
        self._get_session()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Finish saving a pause, stop a token request in flight, close the session if this client opened it."""
        await self.pauses.settled()
        self.credentials.close()
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Created lazily: a ClientSession belongs to the running loop, never to import time.
            self._session = aiohttp.ClientSession()
        return self._session
