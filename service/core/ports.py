"""Ports: what the loops need from the outside world, as Protocols. Adapters implement them; tests use Fakes.

Payloads are WISEflow's JSON as `openapi-1.34.0.json` shapes it (`Json`); the client unwraps the envelope
(`{success, data, error, pagination}`) and follows pagination, so callers see records only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from service.core.request_tally import RequestTally

Json = dict[str, Any]

# Flow states as `POST /flows/search` names them (metadata.states[]).
FLOW_STATES: tuple[str, ...] = (
    "NOT_ACTIVATED",
    "ACTIVATED",
    "PARTICIPATION_STARTED",
    "PARTICIPATION_ENDED",
    "CONCLUDED",
    "ARCHIVED",
)
# Webhook events WISEflow can send (webhook-event-enum).
WEBHOOK_EVENTS: tuple[str, ...] = (
    "ALTERNATIVE_GRADE",
    "ASSESSMENT",
    "ASSIGNMENT",
    "FINAL_GRADE",
    "FLOW_EXTERNAL_SOURCE",
    "FLOW_PERIOD_UPDATED",
    "FLOW_STATE_UPDATED",
    "PAPER_SUBMITTED",
)


class WiseflowApi(Protocol):
    """The WISEflow endpoints wiseflow-sync uses. Every method may raise `ApiError` or `CircuitOpen`."""

    def search_flows(self, states: Sequence[str] | None = None) -> AsyncIterator[Json]:
        """`POST /flows/search`, every page (limit 100), filtered by `metadata.states`."""
        ...

    async def get_flow(self, flow_id: int) -> Json:
        """`GET /flow/{flowId}`: the basic flow (numeric `state`, participation and marking dates)."""
        ...

    def iter_participants(self, flow_id: int) -> AsyncIterator[Json]:
        """`GET /flows/{flowId}/participants`, every page (limit 100)."""
        ...

    async def get_assessments(self, flow_id: int) -> list[Json]:
        """`GET /flow/{flowId}/assessments`: a bare array of grades per participant."""
        ...

    def iter_participation_events(
        self, ts_from: int, ts_to: int, types: Sequence[str] | None = None
    ) -> AsyncIterator[Json]:
        """`POST /participation-events` for a Unix-seconds window, every page (limit 1000)."""
        ...

    async def list_webhooks(self) -> list[Json]:
        """`GET /webhooks`."""
        ...

    async def create_webhook(self, body: Json) -> Json:
        """`POST /webhooks` (a write: never retried automatically)."""
        ...

    async def update_webhook(self, webhook_id: int, body: Json) -> Json:
        """`PUT /webhooks/{webhookId}` (a write: never retried automatically)."""
        ...

    async def delete_webhook(self, webhook_id: int) -> None:
        """`DELETE /webhooks/{webhookId}`."""
        ...

    async def test_webhook(self, webhook_id: int) -> None:
        """`POST /webhooks/{webhookId}/test`."""
        ...

    async def license_info(self) -> Json:
        """`GET /license/info`: a cheap authenticated call, used as the breaker's probe and a self-check."""
        ...

    def counting(self, tally: RequestTally) -> WiseflowApi:
        """These endpoints with every request they send (token requests and retries included) counted into
        `tally`: a sync run's view, sharing everything else (the gate, the token) with this one."""
        ...


class Sink(Protocol):
    """The institution's SIS: accepts one grade version, idempotently by key."""

    async def deliver(self, record: Json, idempotency_key: str) -> None:
        """POST the record; return on 2xx, raise `SinkError` otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class SavedPause:
    """A wait WISEflow asked for, as saved: until when (Unix seconds), why, and when it was saved."""

    until: float
    reason: str
    saved_at: float


@dataclass(frozen=True, slots=True)
class PauseState:
    """The saved pause (None: none) and how many times an operator has cleared one (`generation`).

    A process that holds a pause it saved or read under an older generation knows an operator lifted it
    since; a missing pause alone cannot tell "cleared" from "never saved" (a save that failed, say).
    """

    pause: SavedPause | None
    generation: int


class PauseStore(Protocol):
    """Where the client keeps the pause WISEflow asked for, so that it outlives the process."""

    async def save(self, until_wall: float, reason: str) -> int:
        """Keep the pause until `until_wall` unless a longer one is saved; return the generation it is under."""
        ...

    async def load(self) -> SavedPause | None:
        """The saved pause (possibly already over), or None."""
        ...

    async def current(self) -> PauseState:
        """The saved pause with its generation (one read)."""
        ...

    async def clear(self) -> SavedPause | None:
        """Forget the saved pause and count a new generation (an operator lifting it); return what it was."""
        ...
