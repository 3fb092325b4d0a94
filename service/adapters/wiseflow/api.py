"""The `WiseflowApi` port over a `Caller`: each endpoint's path and body, its envelope, its pagination.

`WiseflowClient` (client.py) is these endpoints over the process's one caller. `counting(tally)` is the
same endpoints over the same caller (the same gate, token and transport) with every request carrying
`tally`: the view a sync run reaches WISEflow through, so that what it sends, and only that, is counted
into its tally (token requests and retries included: they carry the tally of the call that needed them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final

from service.core.ports import Json
from service.core.request_tally import RequestTally
from service.errors import ApiError

from .pagination import paginate, unwrap
from .records import Reply, Request
from .retry import Caller

# Each endpoint's documented maximum `limit` (openapi-1.34.0.json): fewer pages, fewer calls.
SEARCH_LIMIT: Final = 100
PARTICIPANTS_LIMIT: Final = 100
EVENTS_LIMIT: Final = 1000


class WiseflowEndpoints:
    """The endpoints wiseflow-sync uses, each call made by `caller` and counted into `tally` (if any)."""

    def __init__(self, caller: Caller, tally: RequestTally | None = None) -> None:
        self._caller = caller
        self._tally = tally

    def counting(self, tally: RequestTally) -> WiseflowEndpoints:
        """These endpoints, every request they send counted into `tally` (a sync run's view)."""
        return WiseflowEndpoints(self._caller, tally)

    async def request(
        self, method: str, path: str, *, params: Mapping[str, str | int] | None = None, json: Any = None
    ) -> Reply:
        """Any endpoint, with every policy applied: a 2xx `Reply` or an `ApiError`/`CircuitOpen`."""
        return await self._caller.call(Request(method, path, params=params, json=json, tally=self._tally))

    async def _object(self, method: str, path: str, json: Any = None) -> Json:
        data, _ = unwrap(await self.request(method, path, json=json))
        if not isinstance(data, dict):
            raise ApiError(
                "WISEflow answered an unexpected shape (expected an object)", method=method, path=path
            )
        return data

    async def _list(self, method: str, path: str) -> list[Json]:
        data, _ = unwrap(await self.request(method, path))
        if not isinstance(data, list):
            raise ApiError("WISEflow answered an unexpected shape (expected a list)", method=method, path=path)
        return data

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
