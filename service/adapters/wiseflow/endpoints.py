"""The WISEflow endpoints this service calls, and which of its commands call each: the client's registry.

`certify` lists exactly these, each with the number of requests the journal observed; an endpoint the
service never calls has no place here. Tests check that every path the client calls is listed and that
every entry is in WISEflow's OpenAPI description.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .records import route_of


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint: method, path template as WISEflow documents it, why we call it, and who does."""

    method: str
    path: str
    purpose: str
    used_by: tuple[str, ...]

    @property
    def route(self) -> str:
        """The route as logs, metrics and the journal name it: `{flowId}` and friends become `{id}`."""
        return _TEMPLATE_ID.sub("/{id}", self.path)


_TEMPLATE_ID: Final = re.compile(r"/\{[A-Za-z]+\}(?=/|$)")

ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint(
        "POST",
        "/oauth2/token",
        "OAuth 2.0 client credentials: a token before expiry, and after a 401",
        ("run", "sync", "webhooks ensure", "demo", "preflight"),
    ),
    Endpoint(
        "POST", "/flows/search", "discovery of flows by state (paged, limit 100)", ("run", "sync", "demo")
    ),
    Endpoint(
        "GET", "/flow/{flowId}", "a flow's state and dates (webhook refreshes, vanished flows)", ("run", "sync")
    ),
    Endpoint(
        "GET",
        "/flows/{flowId}/participants",
        "participants of due flows (paged, limit 100)",
        ("run", "sync", "demo"),
    ),
    Endpoint("GET", "/flow/{flowId}/assessments", "grades of due flows", ("run", "sync", "demo")),
    Endpoint(
        "POST",
        "/participation-events",
        "hand-ins since a cursor, for early refreshes (limit 1000)",
        ("run", "sync", "demo"),
    ),
    Endpoint("GET", "/webhooks", "the current subscription", ("webhooks ensure", "certify", "preflight")),
    Endpoint("POST", "/webhooks", "create the subscription", ("webhooks ensure", "demo", "preflight")),
    Endpoint("PUT", "/webhooks/{webhookId}", "update the subscription's URL or events", ("webhooks ensure",)),
    Endpoint("GET", "/license/info", "read-only check of the credentials", ("preflight",)),
    Endpoint("POST", "/webhooks/{webhookId}/test", "WISEflow's test delivery", ("preflight",)),
    Endpoint("DELETE", "/webhooks/{webhookId}", "remove preflight's temporary subscription", ("preflight",)),
)


def endpoint_of(method: str, path: str) -> str:
    """`METHOD /route` of a concrete request path, the key the counts are grouped by."""
    return f"{method} {route_of(path)}"
