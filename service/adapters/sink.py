"""The SIS sink over HTTP: `POST {SYNC_SINK_URL}` with one grade version and its `Idempotency-Key`.

Implements `core.ports.Sink`. 2xx means delivered; anything else (or no answer) raises `SinkError`,
and the outbox deliverer retries later with the same key, so the SIS can drop a repeat.

- The URL is used exactly as configured and redirects are never followed: on a 301/302 aiohttp would
  re-send the POST as a GET (a 2xx to that GET is no delivery), and a 307/308 could send the grade to
  whatever host the redirect names. A 3xx is a failure like a 5xx.
- Authentication: `SYNC_SINK_TOKEN` as `Authorization: Bearer`, and/or `SYNC_SINK_SECRET` signing each
  delivery the Standard Webhooks way (`webhook-id` is the Idempotency-Key).
- The answer's body is read only up to `ANSWER_LIMIT` bytes: nothing in it is needed, and a SIS must not
  be able to make us hold an unbounded body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Tracer

from service.adapters.spans import NO_TRACER, unit_span
from service.core.ports import Json
from service.core.retry_after import parse_retry_after
from service.core.signatures import (
    STANDARD_ID_HEADER,
    STANDARD_SIGNATURE_HEADER,
    STANDARD_TIMESTAMP_HEADER,
    sign_standard,
)
from service.errors import SinkError
from service.settings import Secret

# 64 KiB: far more than any acknowledgement; the rest of a larger body is dropped with the connection.
ANSWER_LIMIT: Final = 64 * 1024
_POST: Final = {"http.request.method": "POST"}
log = logging.getLogger("service.sink")


class HttpSink:
    """Delivers grade versions to the SIS; the session is owned by the caller (one per process)."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 10.0,
        client_name: str = "",
        token: Secret | None = None,
        secret: Secret | None = None,
        wall: Callable[[], float] = time.time,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self._url = url
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._client_name = client_name or "wiseflow-sync"
        self._token = token
        self._secret = secret
        self._wall = wall
        self._tracer = tracer

    async def deliver(self, record: Json, idempotency_key: str) -> None:
        """POST the record in a CLIENT span (its `traceparent` sent along); one INFO line per delivery."""
        started = time.perf_counter()
        # Hand-made rather than opentelemetry-instrumentation-aiohttp-client: the session is shared with the
        # WISEflow client, whose spans are our own (per attempt, with X-Trace-Id); one span here is enough.
        with unit_span(self._tracer, "SIS delivery", kind=SpanKind.CLIENT, attributes=_POST) as span:
            try:
                status = await self._post(record, idempotency_key)
            except SinkError as exc:
                if exc.status is not None:
                    span.set_attribute("http.response.status_code", exc.status)
                _log_delivery(exc.status, started, failed=True)
                raise
            span.set_attribute("http.response.status_code", status)
            _log_delivery(status, started, failed=False)

    async def _post(self, record: Json, idempotency_key: str) -> int:
        """POST the record; its status on 2xx, `SinkError` otherwise (never echoing the body)."""
        body = orjson.dumps(record)
        headers = self._headers(body, idempotency_key)
        inject(headers)  # the delivery span's W3C `traceparent` (and `tracestate`): the SIS may join the trace
        try:
            async with self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                await response.content.read(ANSWER_LIMIT)
                if 200 <= response.status < 300:
                    return response.status
                if 300 <= response.status < 400:
                    # The SIS wants another URL: say which one we used, as configured, so it can be fixed.
                    raise SinkError(
                        f"sink answered a redirect for {_shown(self._url)} (SYNC_SINK_URL); redirects are"
                        " never followed",
                        status=response.status,
                    )
                retry_after = parse_retry_after(response.headers.get("Retry-After"), self._wall())
                raise _refusal(response.status, len(body), self._url, retry_after)
        except (aiohttp.ClientError, TimeoutError) as exc:
            where = f"{_shown(self._url)} (SYNC_SINK_URL)"
            raise SinkError(f"sink unreachable at {where}: {type(exc).__name__}") from exc

    def _headers(self, body: bytes, idempotency_key: str) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            "User-Agent": self._client_name,
        }
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        if self._secret is not None:
            timestamp = int(self._wall())
            headers[STANDARD_ID_HEADER] = idempotency_key
            headers[STANDARD_TIMESTAMP_HEADER] = str(timestamp)
            headers[STANDARD_SIGNATURE_HEADER] = sign_standard(
                self._secret.reveal(), idempotency_key, timestamp, body
            )
        return headers


def _log_delivery(status: int | None, started: float, *, failed: bool) -> None:
    """One line per delivery: status, duration and outcome (no grade, no key; the deliverer says why)."""
    fields = {
        "event": "sis.delivery",
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        "outcome": "failed" if failed else "delivered",
    }
    log.info("SIS delivery", extra=fields)


def _refusal(status: int, size: int, url: str, retry_after: float | None) -> SinkError:
    """The error of a 4xx/5xx answer; for a fault of the SIS's setup, what to check (never a credential)."""
    where = f"{_shown(url)} (SYNC_SINK_URL)"
    if status in (401, 403):
        message = f"the SIS refused our credentials at {where}: check SYNC_SINK_TOKEN or SYNC_SINK_SECRET"
    elif status in (404, 405):
        message = f"the SIS has no grade endpoint at {where}: check SYNC_SINK_URL"
    elif status == 413:
        message = f"the SIS refused a {size}-byte grade record as too large at {where}"
    elif status >= 500 or status in (408, 429):
        message = f"the SIS is unwell at {where}"
    else:
        message = "sink refused the delivery"
    return SinkError(message, status=status, retry_after=retry_after, body_size=size)


def _shown(url: str) -> str:
    """The URL as configured, but without a query string (it may carry a credential)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) + ("?..." if parts.query else "")
