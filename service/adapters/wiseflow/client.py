"""`WiseflowClient`: the one object through which the whole process reaches WISEflow (`WiseflowApi`).

Composition: `Admission` (limiter + saved pause + breaker) and `Transport` (headers, timeouts, logs, spans,
journal), joined by the `Door` every request passes <- `Caller` (auth, 401 replay, retries) <- this class
(endpoints, envelopes, pagination). Create one per process and share it (the composition root's factory,
`service.clients`, does): the gate inside it is what makes "a 429 pauses everyone" and "while OPEN
nothing is sent" true for every loop and handler.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
from opentelemetry import trace

from service.adapters.spans import add_event
from service.core.backoff import Random, RetryPolicy
from service.core.breaker import BreakerPolicy, Transition
from service.core.clock import Clock, SystemClock
from service.core.ports import Json, PauseStore
from service.core.ratebudget import RateBudget
from service.errors import ApiError
from service.settings import Settings

from .admission import Admission
from .auth import ApiKeyAuth, Credentials, OAuthTokens
from .door import Door
from .pagination import paginate, unwrap
from .records import OnRequest, Reply
from .retry import Caller
from .transport import Transport, log

# Each endpoint's documented maximum `limit` (openapi-1.34.0.json): fewer pages, fewer calls.
SEARCH_LIMIT: Final = 100
PARTICIPANTS_LIMIT: Final = 100
EVENTS_LIMIT: Final = 1000


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


class WiseflowClient:
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
        self._caller = Caller(door, self.credentials, self.policy, self._clock, self._rng)

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

    async def restore_pause(self) -> float:
        """At startup: hold every caller for what is left of a pause saved by an earlier process (seconds)."""
        return await self.pauses.restore()

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

    async def request(
        self, method: str, path: str, *, params: Mapping[str, str | int] | None = None, json: Any = None
    ) -> Reply:
        """Any endpoint, with every policy applied: a 2xx `Reply` or an `ApiError`/`CircuitOpen`."""
        return await self._caller.call(method, path, params=params, json=json)

    async def _data(self, method: str, path: str, json: Any = None) -> Any:
        reply = await self.request(method, path, json=json)
        items, _ = unwrap(reply)
        return items

    async def _object(self, method: str, path: str, json: Any = None) -> Json:
        data = await self._data(method, path, json)
        if not isinstance(data, dict):
            raise ApiError(
                "WISEflow answered an unexpected shape (expected an object)", method=method, path=path
            )
        return data

    async def _list(self, method: str, path: str) -> list[Json]:
        data = await self._data(method, path)
        if not isinstance(data, list):
            raise ApiError("WISEflow answered an unexpected shape (expected a list)", method=method, path=path)
        return data

    # --- the WiseflowApi port -------------------------------------------------------------------------

    def search_flows(self, states: Sequence[str] | None = None) -> AsyncIterator[Json]:
        """`POST /flows/search`, every page (limit 100), filtered by `metadata.states`."""
        body: Json = {"metadata": {"states": list(states)}} if states else {}
        return paginate(self.request, "POST", "/flows/search", SEARCH_LIMIT, lambda _o, _l: body)

    async def get_flow(self, flow_id: int) -> Json:
        """`GET /flow/{flowId}`."""
        return await self._object("GET", f"/flow/{int(flow_id)}")

    def iter_participants(self, flow_id: int) -> AsyncIterator[Json]:
        """`GET /flows/{flowId}/participants`, every page (limit 100)."""
        return paginate(self.request, "GET", f"/flows/{int(flow_id)}/participants", PARTICIPANTS_LIMIT)

    async def get_assessments(self, flow_id: int) -> list[Json]:
        """`GET /flow/{flowId}/assessments`: a bare array (an envelope is unwrapped too)."""
        return await self._list("GET", f"/flow/{int(flow_id)}/assessments")

    def iter_participation_events(
        self, ts_from: int, ts_to: int, types: Sequence[str] | None = None
    ) -> AsyncIterator[Json]:
        """`POST /participation-events` for a Unix-seconds window, every page (limit 1000, in the body)."""

        def body(offset: int, limit: int) -> Json:
            out: Json = {
                "timestamp": {"from": int(ts_from), "to": int(ts_to)},
                "pagination": {"limit": limit, "offset": offset},
            }
            if types:
                out["types"] = list(types)
            return out

        return paginate(self.request, "POST", "/participation-events", EVENTS_LIMIT, body, in_query=False)

    async def list_webhooks(self) -> list[Json]:
        """`GET /webhooks`."""
        return await self._list("GET", "/webhooks")

    async def create_webhook(self, body: Json) -> Json:
        """`POST /webhooks` (a write: never retried automatically)."""
        return await self._object("POST", "/webhooks", body)

    async def update_webhook(self, webhook_id: int, body: Json) -> Json:
        """`PUT /webhooks/{webhookId}` (a write: never retried automatically)."""
        return await self._object("PUT", f"/webhooks/{int(webhook_id)}", body)

    async def delete_webhook(self, webhook_id: int) -> None:
        """`DELETE /webhooks/{webhookId}`."""
        await self.request("DELETE", f"/webhooks/{int(webhook_id)}")

    async def test_webhook(self, webhook_id: int) -> None:
        """`POST /webhooks/{webhookId}/test`."""
        await self.request("POST", f"/webhooks/{int(webhook_id)}/test")

    async def license_info(self) -> Json:
        """`GET /license/info`: cheap and authenticated, the breaker's natural probe."""
        return await self._object("GET", "/license/info")
