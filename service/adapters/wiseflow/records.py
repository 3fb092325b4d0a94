"""One exchange with WISEflow as values: the `Request` sent, the `Reply` read, the `RequestRecord` journalled,
and how an answer becomes an error of `service.errors`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from service.core.request_tally import RequestTally
from service.errors import ApiError, ApiUnavailable, AuthError, RateLimited

# Numeric path segments become `{id}`: span names stay few, and the ids are not needed to group by.
_ID_SEGMENT: Final = re.compile(r"/[0-9]+(?=/|$)")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request that left the process, for the sync engine's request journal (no token, no query)."""

    time: float  # wall clock (Unix seconds) when it was sent
    method: str
    path: str  # relative to the API base URL, e.g. "/flow/12"
    status: int | None  # None when no answer came (timeout, refused connection)
    duration_ms: float
    attempt: int
    trace_id: str | None  # the response's X-Trace-Id
    retry_after: float | None = None  # seconds the answer's Retry-After asked for (None: it had none)


OnRequest = Callable[[RequestRecord], None]


@dataclass(frozen=True, slots=True)
class Request:
    """One request to WISEflow as a value (httpx's `Request`): what to send, and how it queues.

    `attempt` counts the call's tries (1 for the first; a 401's replay keeps it). `urgent` (the token
    request) skips the queue behind other callers and behind the first request after a pause, never the
    rate budget or the pause itself. `tally`: the sync run's count the request goes into when it leaves
    (a token request it starts carries it too); None for a request of no run. Never carries credentials:
    they are attached once it is admitted.
    """

    method: str
    path: str  # relative to the API base URL, e.g. "/flow/12"
    attempt: int = 1
    # Bodies are left out of the repr: the token request's form holds the client secret, a webhook's the
    # signing secret, and a repr is what ends up in a log line or a traceback.
    params: Mapping[str, str | int] | None = field(default=None, repr=False)
    json: Any = field(default=None, repr=False)
    data: Mapping[str, str] | None = field(default=None, repr=False)  # a form body (the token request's)
    urgent: bool = False
    tally: RequestTally | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, headers, the decoded JSON body (None when not JSON) and X-Trace-Id."""

    method: str
    path: str
    status: int
    headers: Mapping[str, str]
    body: Any
    trace_id: str | None
    attempt: int
    sent: float = 0.0  # the client's monotonic clock when the request left (a token's life starts after it)
    retry_after: float | None = None  # the answer's Retry-After in seconds, read when it came (None: none)

    @property
    def ok(self) -> bool:
        """2xx."""
        return 200 <= self.status < 300

    def context(self) -> dict[str, Any]:
        """The keyword arguments every `ApiError` carries."""
        return {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "trace_id": self.trace_id,
            "attempt": self.attempt,
        }


def route_of(path: str) -> str:
    """The path with ids replaced: "/flow/12/assessments" -> "/flow/{id}/assessments"."""
    return _ID_SEGMENT.sub("/{id}", path)


def error_code(body: Any) -> str:
    """The short reason label of WISEflow's error envelope (never its free text, which may name people)."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            errors = error.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
                reason = errors[0].get("reason")
                if isinstance(reason, str) and len(reason) <= 64:
                    return reason
        code = body.get("error")
        if isinstance(code, str) and len(code) <= 64:
            return code  # the OAuth error shape: {"error": "invalid_client", ...}
    return ""


def error_for(reply: Reply, retry_after: float | None) -> ApiError:
    """The error of a non-2xx answer: RateLimited, ApiUnavailable, AuthError or plain ApiError."""
    code = error_code(reply.body)
    label = f"WISEflow answered {reply.status}" + (f" ({code})" if code else "")
    if reply.status == 429:
        return RateLimited(label, retry_after=retry_after or 0.0, **reply.context())
    if reply.status in (408, 502, 503, 504) or (reply.status >= 500 and reply.status != 501):
        return ApiUnavailable(label, retry_after=retry_after, **reply.context())
    if reply.status == 401:
        return AuthError(label, **reply.context())
    return ApiError(label, **reply.context())
