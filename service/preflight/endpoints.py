"""Each read the service makes, asked once (first page only) and validated against the OpenAPI snapshot.

Read-only toward the institution's data: GETs, and the two POST searches the service also sends
(`/flows/search`, `/participation-events`), each for one small first page. The flow-scoped endpoints use
the flow furthest along on the search's first page; when it returns none they are skipped, saying so.

What is judged is the shape of a 2xx answer, against the snapshot as its examples show it. What the snapshot
does not describe -- WISEflow pacing a client (429) or down for maintenance (503) -- is reported as seen,
with its Retry-After and X-Trace-Id, and the endpoint's check is skipped rather than failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from service.adapters.wiseflow import WiseflowClient
from service.adapters.wiseflow.records import Reply
from service.errors import ApiError, CircuitOpen, ServiceError

from . import schemas
from .report import Check, failed, passed, skipped

# A small first page: enough records to validate their shape, few enough to be no load on WISEflow.
PAGE: Final = 10
# The participation-events window asked for: the last day.
EVENTS_WINDOW_S: Final = 86_400
# The flow asked about is the one furthest along on the first page: the likeliest to have grades to validate.
# Answers the OpenAPI snapshot describes for no endpoint: nothing to judge them against.
NOT_IN_SNAPSHOT: Final = (429, 503)
_FURTHEST_FIRST: Final = (
    "CONCLUDED", "ARCHIVED", "PARTICIPATION_ENDED", "PARTICIPATION_STARTED", "ACTIVATED", "NOT_ACTIVATED"
)  # fmt: skip


def endpoint_check(method: str, template: str, schema: str, reply: Reply) -> Check:
    """Whether one answer has the documented shape; the evidence names the status and X-Trace-Id."""
    name = f"endpoint {method} {template}"
    trace = f", X-Trace-Id {reply.trace_id}" if reply.trace_id else ""
    found = schemas.problems(schema, reply.body)
    if found:
        return failed(name, f"{reply.status}{trace}, not as documented ({schema}): {'; '.join(found)}")
    return passed(name, f"{reply.status}{trace}, matches {schema}{_count(reply.body)}")


def refusal_check(method: str, template: str, exc: ServiceError) -> Check:
    """No 2xx answer: skipped and reported when the snapshot does not describe it (429, 503), else failed."""
    name = f"endpoint {method} {template}"
    if isinstance(exc, CircuitOpen):
        return skipped(name, f"not asked: the circuit breaker is open ({exc.reason}); reported, not judged")
    if isinstance(exc, ApiError) and exc.status in NOT_IN_SNAPSHOT:
        wait = getattr(exc, "retry_after", None)
        after = f", Retry-After {wait:g} s" if isinstance(wait, int | float) and wait > 0 else ""
        trace = f", X-Trace-Id {exc.trace_id}" if exc.trace_id else ""
        return skipped(
            name,
            f"not validated: WISEflow answered {exc.status}{after}{trace}; the OpenAPI snapshot does not "
            "describe it, so it is reported, not judged (run preflight again later)",
        )
    return failed(name, str(exc))


def token_check(answer: dict[str, Any] | None) -> Check:
    """`POST /oauth2/token`, from the client's last token answer (the token itself masked there)."""
    name = "endpoint POST /oauth2/token"
    if answer is None:
        return failed(name, "the token answer was not a JSON object")
    found = schemas.problems("oauth2TokenResponse", answer)
    if found:
        return failed(name, f"not as documented (oauth2TokenResponse): {'; '.join(found)}")
    return passed(name, "matches oauth2TokenResponse")


async def check_reads(client: WiseflowClient, now_wall: float) -> list[Check]:
    """Every read endpoint after `/license/info` (which the credentials check asked already)."""
    checks: list[Check] = []
    search = await _ask(
        checks, client, "POST", "/flows/search", "/flows/search", "flows-search-api-response",
        params={"offset": 0, "limit": PAGE}, json={},
    )  # fmt: skip
    flow_id = _pick_flow(search)
    events_body = {
        "timestamp": {"from": int(now_wall) - EVENTS_WINDOW_S, "to": int(now_wall)},
        "pagination": {"limit": PAGE, "offset": 0},
    }
    await _ask(
        checks, client, "POST", "/participation-events", "/participation-events", "event-api-response",
        json=events_body,
    )  # fmt: skip
    await _ask(checks, client, "GET", "/webhooks", "/webhooks", "webhooks-api-response")
    scoped: list[tuple[str, Callable[[int], str], str, dict[str, Any] | None]] = [
        ("/flow/{flowId}", lambda f: f"/flow/{f}", "basic-flow", None),
        ("/flows/{flowId}/participants", lambda f: f"/flows/{f}/participants", "flow-participants-api-response",
         {"offset": 0, "limit": PAGE}),
        ("/flow/{flowId}/assessments", lambda f: f"/flow/{f}/assessments", "assessments", None),
    ]  # fmt: skip
    for template, path, schema, params in scoped:
        if flow_id is None:
            checks.append(skipped(f"endpoint GET {template}", "POST /flows/search found no flow to ask about"))
        else:
            await _ask(checks, client, "GET", path(flow_id), template, schema, params=params)
    return checks


async def _ask(
    checks: list[Check],
    client: WiseflowClient,
    method: str,
    path: str,
    template: str,
    schema: str,
    *,
    params: dict[str, Any] | None = None,
    json: Any = None,
) -> Reply | None:
    """Ask one endpoint, append its check; the reply when there was a 2xx answer."""
    try:
        reply = await client.request(method, path, params=params, json=json)
    except ServiceError as exc:
        checks.append(refusal_check(method, template, exc))
        return None
    checks.append(endpoint_check(method, template, schema, reply))
    return reply


def _pick_flow(reply: Reply | None) -> int | None:
    """The id of the flow furthest along among the search's first page; None when there is none."""
    body = reply.body if reply is not None else None
    data = body.get("data") if isinstance(body, dict) else None
    flows: list[tuple[str, int]] = [
        (str(item.get("state")), item["flowId"])
        for item in (data if isinstance(data, list) else [])
        if isinstance(item, dict)
        and isinstance(item.get("flowId"), int)
        and not isinstance(item["flowId"], bool)
    ]
    if not flows:
        return None
    rank = {state: i for i, state in enumerate(_FURTHEST_FIRST)}
    return min(flows, key=lambda f: rank.get(f[0], len(rank)))[1]


def _count(body: Any) -> str:
    """`, 10 records`, for an envelope or a bare array (how much was validated)."""
    data = body.get("data") if isinstance(body, dict) else body
    return f", {len(data)} record(s) validated" if isinstance(data, list) else ""
