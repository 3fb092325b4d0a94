"""One exchange with WISEflow: headers, timeouts, a bounded body, a span, a log line, a journal record.

Every request of the process passes here, the token request included, once the admission gate
(`admission.py`) has let it go: so every one of them carries `X-Client-Name` and is logged and traced the
same way. Waiting, the breaker and what an answer means for everyone are the gate's; retries and
re-authentication are decided one level up (`retry.py`). This level sends one request, tells the slot
what came back, and translates it into a `Reply` or an `ApiUnavailable` (no answer at all).

One resend happens below us: aiohttp repeats an idempotent request once when a reused keep-alive
connection turns out to be closed before any answer (RFC 9112 9.3.1). That resend is not an attempt of
ours and is not counted by the budget; it only happens when the server dropped the first copy unanswered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import aiohttp
import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from yarl import URL

from service import __version__
from service.core.clock import Clock
from service.core.retry_after import parse_retry_after
from service.errors import ApiError, ApiUnavailable
from service.settings import Settings

from .admission import Slot
from .records import OnRequest, Reply, Request, RequestRecord, route_of

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
USER_AGENT: Final = f"wiseflow-sync/{__version__}"
# The largest answer we hold in memory (after decompression): a page of 1,000 events is well under 1 MiB,
# so only a broken or hostile server reaches this, and it must not exhaust the process's memory.
MAX_BODY: Final = 32 * 2**20
# The span attribute carrying WISEflow's X-Trace-Id (same name as service.adapters.telemetry uses).
X_TRACE_ID_ATTRIBUTE: Final = "wiseflow.trace_id"
# A limiter wait shorter than this is ordinary pacing, not worth a span event.
LIMITER_EVENT_MIN: Final = 0.001


class Transport:
    """Sends one admitted request and reads its answer (httpx's transport): never waits, judges or retries."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        session: Callable[[], aiohttp.ClientSession],
        on_request: OnRequest | None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._base = settings.api_url.rstrip("/")
        self._base_path = URL(self._base).path.rstrip("/")
        self._client_name = settings.client_name
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        )
        self._clock = clock
        self._session = session
        self._on_request = on_request
        self._tracer = tracer or _tracer
        self.calls = 0  # requests that left the process, token requests included

    def headers(self, auth: Mapping[str, str]) -> dict[str, str]:
        """The headers of every request: identification first, then the credentials."""
        return {
            "X-Client-Name": self._client_name,
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            **auth,
        }

    async def handle(self, request: Request, slot: Slot) -> Reply:
        """Send once: a `Reply` for any answer, `ApiUnavailable` for none; `slot` is told first, then logged."""
        method, path, attempt = request.method, request.path, request.attempt
        # Not opentelemetry-instrumentation-aiohttp-client (0.66b1 pins semantic-conventions 0.66b1, the SDK
        # 0.66b2): its hooks see method, URL and headers, not the attempt, and its span ends before the body.
        with self._tracer.start_as_current_span(
            f"WISEflow {method} {route_of(path)}", kind=SpanKind.CLIENT
        ) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", self._base_path + path)
            span.set_attribute("http.request.resend_count", attempt - 1)
            span.set_attribute("wiseflow.attempt", attempt)
            if slot.waited >= LIMITER_EVENT_MIN:
                span.add_event("rate_limiter.wait", {"seconds": round(slot.waited, 3)})
            return await self._exchange(span, request, slot)

    async def _exchange(self, span: trace.Span, request: Request, slot: Slot) -> Reply:
        method, path, attempt = request.method, request.path, request.attempt
        sent_wall, sent, started = self._clock.wall(), self._clock.monotonic(), time.perf_counter()
        self.calls += 1
        if request.tally is not None:  # a sync run's request: counted for that run, on the wire
            request.tally.count(f"{method} {route_of(path)}")
        try:
            async with self._session().request(
                method,
                self._base + path,
                params=request.params,
                json=request.json,
                data=request.data,
                headers=self.headers(slot.headers),
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                raw = await _read_bounded(response, MAX_BODY)
                body = None if raw is None else _decode(raw)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.wall())
                trace_id = _trace_id(response.headers)
                reply = Reply(
                    method, path, response.status, response.headers, body, trace_id, attempt, sent, retry_after
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            duration = (time.perf_counter() - started) * 1000
            reason = "timeout" if isinstance(exc, TimeoutError) else "connection failed"
            slot.unanswered(reason)
            self._finish(span, sent_wall, duration, request, None, None, reason)
            raise ApiUnavailable(f"WISEflow {reason}", method=method, path=path, attempt=attempt) from exc
        duration = (time.perf_counter() - started) * 1000
        # Before the answer is logged: a process killed on that log line has the pause saved already.
        await slot.answered(reply)
        failure = "answer too large" if raw is None else None
        self._finish(span, sent_wall, duration, request, reply.status, trace_id, failure, retry_after)
        if raw is None:
            # Asking again would bring the same flood: a plain ApiError, never retried.
            raise ApiError(f"WISEflow's answer exceeded {MAX_BODY // 2**20} MiB", **reply.context())
        return reply

    def _finish(
        self,
        span: trace.Span,
        sent_wall: float,
        duration_ms: float,
        request: Request,
        status: int | None,
        trace_id: str | None,
        failure: str | None,
        retry_after: float | None = None,
    ) -> None:
        """Span attributes, one structured log line, one journal record (with the Retry-After asked)."""
        method, path, attempt = request.method, request.path, request.attempt
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if trace_id:
            span.set_attribute(X_TRACE_ID_ATTRIBUTE, trace_id)
        failed = failure is not None or status is None or status >= 400
        if failed:
            span.set_status(Status(StatusCode.ERROR, failure or f"HTTP {status}"))
            span.set_attribute("error.type", failure or str(status))
        fields = {
            "event": "wiseflow.request",
            "x_trace_id": trace_id,
            "method": method,
            "route": route_of(path),
            "path": path,
            "status": status,
            "duration_ms": round(duration_ms, 1),
            "attempt": attempt,
        }
        if failure:
            fields["failure"] = failure
        # INFO for every request: section 7 of the review asks for each request's X-Trace-Id in the logs.
        log.log(logging.WARNING if failed else logging.INFO, "WISEflow request", extra=fields)
        if self._on_request is not None:
            record = RequestRecord(
                sent_wall, method, path, status, round(duration_ms, 3), attempt, trace_id, retry_after
            )
            self._on_request(record)


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None once it grows past `limit` bytes (the rest is left unread; the connection closes)."""
    if response.content_length is not None and response.content_length > limit:
        return None
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _decode(raw: bytes) -> Any:
    """JSON when the body is JSON; None otherwise (an HTML error page from a proxy, an empty 204)."""
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _trace_id(headers: Mapping[str, str]) -> str | None:
    """X-Trace-Id, bounded so a hostile header cannot flood a log line."""
    value = headers.get("X-Trace-Id")
    return value[:128] if value else None
