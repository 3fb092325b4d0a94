"""What the service uses of WISEflow, declared once: the endpoints it calls, what it sends and reads of each.

`certify` lists exactly these endpoints, each with the number of requests the journal observed; `spec diff`
judges a newer OpenAPI document by them (a removed endpoint, a removed or retyped field in `reads`, a new
required parameter not in `params`/`body` break the service). An endpoint the service never calls has no
place here. Tests check that every path the client calls is listed, that every entry and field is in
WISEflow's OpenAPI description, and that each `reads` is exactly what the record parsers read.

Field paths are dotted from the top of the JSON body; `[]` stands for every item of an array
(`data[].flowId`: the `flowId` of each record of an envelope's `data`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from service.core.ports import WEBHOOK_EVENTS

from .records import route_of


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint: method, path template as WISEflow documents it, why we call it, who does, what it uses."""

    method: str
    path: str
    purpose: str
    used_by: tuple[str, ...]
    params: tuple[str, ...] = ()  # path and query parameters the client sends, by name
    body: tuple[str, ...] = ()  # request body fields the client may send (dotted paths)
    reads: tuple[str, ...] = ()  # fields of the 2xx answer the client reads (dotted paths)

    @property
    def route(self) -> str:
        """The route as logs, metrics and the journal name it: `{flowId}` and friends become `{id}`."""
        return _TEMPLATE_ID.sub("/{id}", self.path)


_TEMPLATE_ID: Final = re.compile(r"/\{[A-Za-z]+\}(?=/|$)")

# What each record parser reads of one record (service.core.records, planner, subscriptions and the token
# reader of .auth); the unit tests feed the parsers recording records and compare.
TOKEN_FIELDS: Final = ("access_token", "expires_in")
SEARCH_FIELDS: Final = (
    "flowId", "state", "title", "createdAt", "participation.start", "participation.end", "marking.start",
    "marking.end",
)  # fmt: skip
BASIC_FLOW_FIELDS: Final = (
    "id", "state", "name", "creationDate", "participantStartDate", "participantEndDate", "assessorStartDate",
    "assessorEndDate",
)  # fmt: skip
PARTICIPANT_FIELDS: Final = (
    "participantId",
    "userId",
    "user.id",
    "number",
    "activated",
    "groupId",
    "submissionId",
)
ASSESSMENT_FIELDS: Final = ("participantId", "grade", "adminGrade", "date", "adminGradeDate", "exportState")
EVENT_FIELDS: Final = ("flowId", "type")
WEBHOOK_FIELDS: Final = ("id", "url", "title", "events", "active")
# The total ends a page loop early; without it the client stops at a short page (one more request).
PAGE_TOTAL: Final = "pagination.total"
# The webhook events the service subscribes to and handles (SYNC_WEBHOOK_EVENTS chooses among them).
HANDLED_EVENTS: Final = WEBHOOK_EVENTS


def _each(prefix: str, fields: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{prefix}{f}" for f in fields)


ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint(
        "POST",
        "/oauth2/token",
        "OAuth 2.0 client credentials: a token before expiry, and after a 401",
        ("run", "sync", "webhooks ensure", "demo", "preflight"),
        body=("grant_type", "client_id", "client_secret"),
        reads=TOKEN_FIELDS,
    ),
    Endpoint(
        "POST",
        "/flows/search",
        "discovery of flows by state (paged, limit 100)",
        ("run", "sync", "demo"),
        params=("offset", "limit"),
        body=("metadata.states",),
        reads=(*_each("data[].", SEARCH_FIELDS), PAGE_TOTAL),
    ),
    Endpoint(
        "GET",
        "/flow/{flowId}",
        "a flow's state and dates (webhook refreshes, vanished flows)",
        ("run", "sync"),
        params=("flowId",),
        reads=BASIC_FLOW_FIELDS,
    ),
    Endpoint(
        "GET",
        "/flows/{flowId}/participants",
        "participants of due flows (paged, limit 100)",
        ("run", "sync", "demo"),
        params=("flowId", "offset", "limit"),
        reads=(*_each("data[].", PARTICIPANT_FIELDS), PAGE_TOTAL),
    ),
    Endpoint(
        "GET",
        "/flow/{flowId}/assessments",
        "grades of due flows",
        ("run", "sync", "demo"),
        params=("flowId",),
        reads=_each("[].", ASSESSMENT_FIELDS),
    ),
    Endpoint(
        "POST",
        "/participation-events",
        "hand-ins since a cursor, for early refreshes (limit 1000)",
        ("run", "sync", "demo"),
        body=("timestamp.from", "timestamp.to", "pagination.limit", "pagination.offset", "types"),
        reads=(*_each("data[].", EVENT_FIELDS), PAGE_TOTAL),
    ),
    Endpoint(
        "GET",
        "/webhooks",
        "the current subscription",
        ("webhooks ensure", "certify", "preflight"),
        reads=_each("data[].", WEBHOOK_FIELDS),
    ),
    Endpoint(
        "POST",
        "/webhooks",
        "create the subscription",
        ("webhooks ensure", "demo", "preflight"),
        body=("title", "url", "active", "events", "secret"),
        reads=("data.id",),
    ),
    Endpoint(
        "PUT",
        "/webhooks/{webhookId}",
        "update the subscription's URL or events",
        ("webhooks ensure",),
        params=("webhookId",),
        body=("title", "url", "active", "events"),
        reads=("data",),
    ),
    Endpoint("GET", "/license/info", "read-only check of the credentials", ("preflight",)),
    Endpoint(
        "POST", "/webhooks/{webhookId}/test", "WISEflow's test delivery", ("preflight",), params=("webhookId",)
    ),
    Endpoint(
        "DELETE",
        "/webhooks/{webhookId}",
        "remove preflight's temporary subscription",
        ("preflight",),
        params=("webhookId",),
    ),
)


def endpoint_of(method: str, path: str) -> str:
    """`METHOD /route` of a concrete request path, the key the counts are grouped by."""
    return f"{method} {route_of(path)}"
