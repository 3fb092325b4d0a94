"""What the client makes of a 2xx answer of each endpoint it uses: its own functions, in its own order.

Keyed like the endpoint registry (`METHOD /path`). Each takes the decoded body and returns what the
service keeps of it, raising where the client would (an unexpected shape, a record without its id).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from service.adapters.wiseflow.auth import _access_token, _expires_in
from service.adapters.wiseflow.endpoints import HANDLED_EVENTS
from service.adapters.wiseflow.pagination import unwrap
from service.adapters.wiseflow.records import Reply
from service.core.planner import flows_to_refresh
from service.core.records import Flow, GradeVersion, Participant
from service.core.subscriptions import plan_subscription

OUR_URL: Final = "https://sync.example.org/webhooks/wiseflow"
OUR_TITLE: Final = "wiseflow-sync"  # `webhooks ensure` names its subscription after WISEFLOW_CLIENT_NAME


def data(body: Any) -> Any:
    """What `WiseflowClient` takes from an answer: the envelope's `data`, or the bare body."""
    found, _total = unwrap(Reply("GET", "/", 200, {}, body, None, 1))
    return found


def records(body: Any) -> list[Any]:
    """The records of a page (`paginate` and `_list` refuse anything but a list)."""
    found = data(body)
    assert isinstance(found, list), "the client expects a list here"
    return found


def record(body: Any) -> dict[str, Any]:
    """The object of an answer (`_object` refuses anything but an object)."""
    found = data(body)
    assert isinstance(found, dict), "the client expects an object here"
    return found


def _created_id(body: Any) -> int | None:
    created = record(body)  # `webhooks ensure` after `create_webhook`:
    return created["id"] if isinstance(created.get("id"), int) else None


def _page_total(body: Any) -> int | None:
    return unwrap(Reply("POST", "/", 200, {}, body, None, 1))[1]


PARSERS: Final[dict[str, Callable[[Any], object]]] = {
    "POST /oauth2/token": lambda b: (_access_token(b), _expires_in(b)),
    "POST /flows/search": lambda b: ([Flow.from_search(i) for i in records(b)], _page_total(b)),
    "GET /flow/{flowId}": lambda b: Flow.from_basic(record(b)),
    "GET /flows/{flowId}/participants": lambda b: (
        [Participant.from_api(7, i) for i in records(b)],
        _page_total(b),
    ),
    "GET /flow/{flowId}/assessments": lambda b: [GradeVersion.from_assessment(7, i) for i in records(b)],
    "POST /participation-events": lambda b: (flows_to_refresh(records(b)), _page_total(b)),
    "GET /webhooks": lambda b: plan_subscription(
        records(b), url=OUR_URL, events=HANDLED_EVENTS, title=OUR_TITLE, secret=None
    ),
    "POST /webhooks": _created_id,
    "PUT /webhooks/{webhookId}": record,
    # Read for its status and X-Trace-Id only (the credentials check, the breaker's probe).
    "GET /license/info": record,
    # Nothing of these answers is read: a 2xx is all the client needs.
    "POST /webhooks/{webhookId}/test": lambda b: None,
    "DELETE /webhooks/{webhookId}": lambda b: None,
}
