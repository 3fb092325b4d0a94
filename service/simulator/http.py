"""HTTP helpers of the simulator: WISEflow's envelope, its error shape, and strict parsing of what clients send.

Handlers raise `ApiProblem`; the middleware turns it into the error envelope
``{"success": false, "error": {"code", "message", "errors": [{"reason", "message"}]}}``. Success envelopes
are shaped as the spec's examples show them, ``{"success": true, "data": ..., "error": null}`` (and
``"data": null`` where there is no data), or -- with the `schema` shapes -- in the schemas' own form,
which declares both non-nullable objects and so leaves absent parts out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from service.simulator.world import Json


class ApiProblem(Exception):
    """An error answer: status, a message safe to show, a short reason label, and extra headers."""

    def __init__(
        self, status: int, message: str, reason: str = "invalid", headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = dict(headers or {})


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON response serialised with orjson."""
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def ok(data: Any, *, shapes: str, status: int = 200, pagination: Json | None = None) -> web.Response:
    """WISEflow's success envelope, in `shapes` (`examples` or `schema`, see `SHAPES`)."""
    body: Json = {"success": True, "data": data}
    if shapes == "examples":
        body["error"] = None
    if pagination is not None:
        body["pagination"] = pagination
    return json_response(body, status)


def done(*, shapes: str) -> web.Response:
    """A success without data (`success-api-response-no-data`): as its example shows it, or as its schema."""
    body: Json = {"success": True, "data": None, "error": None} if shapes == "examples" else {"success": True}
    return json_response(body)


def error_body(status: int, message: str, reason: str) -> Json:
    """WISEflow's error envelope (general-api-error-response)."""
    return {
        "success": False,
        "error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]},
    }


def problem_response(problem: ApiProblem) -> web.Response:
    """The error envelope of an `ApiProblem`."""
    return json_response(
        error_body(problem.status, problem.message, problem.reason), problem.status, problem.headers
    )


async def read_json(request: web.Request, *, empty: Any = None) -> Any:
    """The request's JSON body; `empty` when there is none; `ApiProblem(400)` when it is not JSON."""
    raw = await request.read()
    if not raw.strip():
        return empty
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiProblem(400, "the request body is not valid JSON", "invalid_json") from None


async def read_object(request: web.Request) -> Json:
    """The request's JSON body, which must be an object (an empty body is `{}`)."""
    body = await read_json(request, empty={})
    if not isinstance(body, dict):
        raise ApiProblem(400, "the request body must be a JSON object", "invalid_body")
    return body


def path_int(request: web.Request, name: str) -> int:
    """An integer path parameter; anything else is a 400 naming it."""
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise ApiProblem(400, f"{name} must be a positive integer", "invalid_parameter")
    return int(raw)


def query_int(request: web.Request, name: str, default: int) -> int:
    """A non-negative integer query parameter."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise ApiProblem(400, f"{name} must be a non-negative integer", "invalid_parameter")
    return int(raw)


def page(offset: int, limit: int, maximum: int) -> None:
    """Check a page request against an endpoint's maximum `limit`."""
    if limit < 1 or limit > maximum:
        raise ApiProblem(400, f"limit must be between 1 and {maximum}", "invalid_limit")
    if offset < 0:
        raise ApiProblem(400, "offset must not be negative", "invalid_offset")


def query_page(request: web.Request, maximum: int) -> tuple[int, int]:
    """`offset` and `limit` from the query, checked against `maximum` (WISEflow answers 400 above it)."""
    offset, limit = query_int(request, "offset", 0), query_int(request, "limit", maximum)
    page(offset, limit, maximum)
    return offset, limit


def field_int(obj: Json, name: str, *, default: int | None = None, where: str = "") -> int | None:
    """An optional integer field of a JSON object; booleans and other types are a 400 naming it."""
    value = obj.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiProblem(400, f"{where}{name} must be an integer", "invalid_field")
    return value


def field_object(obj: Json, name: str, *, where: str = "") -> Json:
    """An optional object field ({} when absent or null)."""
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiProblem(400, f"{where}{name} must be an object", "invalid_field")
    return value


def field_strings(
    obj: Json, name: str, allowed: tuple[str, ...] | None = None, *, where: str = ""
) -> list[str] | None:
    """An optional list of strings, each among `allowed` when given."""
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiProblem(400, f"{where}{name} must be a list of strings", "invalid_field")
    if allowed is not None:
        bad = sorted(set(value) - set(allowed))
        if bad:
            raise ApiProblem(400, f"{where}{name} has unknown value(s) {', '.join(bad)}", "invalid_field")
    return value
