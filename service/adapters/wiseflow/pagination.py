"""WISEflow's envelope and its offset/limit pagination, as async iterators of records.

Envelope: ``{success, data, error, pagination: {limit, offset, total}}``; some endpoints answer a bare
array instead. A page loop stops at `pagination.total`, at an empty page, or -- when the server gives no
total -- at a short page. A bare array is the whole collection: there is no offset to follow, and asking
again with a larger offset could repeat it forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

from service.core.ports import Json
from service.errors import ApiError

from .records import Reply, error_code


class Request(Protocol):
    """`WiseflowClient.request`."""

    def __call__(
        self, method: str, path: str, *, params: Mapping[str, str | int] | None = ..., json: Any = ...
    ) -> Awaitable[Reply]: ...


def unwrap(reply: Reply) -> tuple[Any, int | None]:
    """(data, pagination.total) of an envelope; (array, None) of a bare array."""
    body = reply.body
    if isinstance(body, list):
        return body, None
    if isinstance(body, dict):
        if body.get("success") is False:
            code = error_code(body)
            raise ApiError("WISEflow reported a failure" + (f" ({code})" if code else ""), **reply.context())
        if "data" not in body:
            return body, None
        pagination = body.get("pagination")
        total = pagination.get("total") if isinstance(pagination, dict) else None
        valid = isinstance(total, int) and not isinstance(total, bool) and total >= 0
        return body["data"], total if valid else None
    if body is None and reply.status == 204:
        return None, None
    raise ApiError("WISEflow answered an unexpected shape (not JSON)", **reply.context())


async def paginate(
    request: Request,
    method: str,
    path: str,
    limit: int,
    body: Callable[[int, int], Json] | None = None,
    *,
    in_query: bool = True,
) -> AsyncIterator[Json]:
    """Every record of an offset/limit endpoint; `body(offset, limit)` builds a POST body per page."""
    offset = 0
    while True:
        params = {"offset": offset, "limit": limit} if in_query else None
        reply = await request(method, path, params=params, json=body(offset, limit) if body else None)
        items, total = unwrap(reply)
        if not isinstance(items, list):
            raise ApiError("WISEflow answered an unexpected shape (expected a list)", **reply.context())
        for item in items:
            yield item
        offset += len(items)
        bare = isinstance(reply.body, list)
        if (
            bare
            or not items
            or (total is not None and offset >= total)
            or (total is None and len(items) < limit)
        ):
            return
