"""WISEflow's envelope and its offset/limit pagination, as async iterators of records.

Envelope: ``{success, data, error, pagination: {limit, offset, total}}``; some endpoints answer a bare
array instead. A page loop stops at `pagination.total`, at an empty page, or -- when the server gives no
total -- at a short page. A bare array is the whole collection: there is no offset to follow, and asking
again with a larger offset could repeat it forever.

A misbehaving server must not keep a loop going forever: a page whose content was seen before (the
server ignores `offset` and answers the same page again, or cycles between a few) or more than
`MAX_PAGES` pages end the iteration with an `ApiError`. Only a 16-byte digest per page is kept, never
the pages themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

import orjson

from service.core.ports import Json
from service.errors import ApiError

from .records import Reply, error_code

# 10,000 pages are a million participants or ten million events: far beyond any one WISEflow tenant, and
# still a bound on a server that keeps inventing new full pages without a total.
MAX_PAGES: Final = 10_000


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
    max_pages: int = MAX_PAGES,
) -> AsyncIterator[Json]:
    """Every record of an offset/limit endpoint; `body(offset, limit)` builds a POST body per page."""
    offset = 0
    seen: set[bytes] = set()
    for _page in range(max_pages):
        params = {"offset": offset, "limit": limit} if in_query else None
        reply = await request(method, path, params=params, json=body(offset, limit) if body else None)
        items, total = unwrap(reply)
        if not isinstance(items, list):
            raise ApiError("WISEflow answered an unexpected shape (expected a list)", **reply.context())
        _check_progress(reply, offset, items, seen)
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
    raise ApiError(f"WISEflow pagination did not end within {max_pages} pages", method=method, path=path)


def _check_progress(reply: Reply, offset: int, items: list[Any], seen: set[bytes]) -> None:
    """Raise when the page was seen before: the server ignores `offset` (or cycles between pages).

    The envelope's echoed `pagination.offset` is deliberately not checked: a server that honours the
    offset but echoes it carelessly still pages correctly, and the content is what would loop.
    """
    if not items:
        return
    digest = hashlib.blake2b(orjson.dumps(items, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()
    if digest in seen:
        raise ApiError(
            f"WISEflow repeated a page at offset {offset} (pagination not honoured)", **reply.context()
        )
    seen.add(digest)
