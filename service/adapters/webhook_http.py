"""`POST /webhooks/wiseflow`: verify, parse, store durably, then answer; nothing a sender sends makes a 500.

Order of work for one request, each step answering on its own failure:

0. a body that arrived whole with its headers is read at once; one still on its way holds its size in a
   byte budget shared by every such read (`read_budget.ReadBudget`: memory held before anyone is known is
   bounded); when the budget is full the longest-waiting read is cut off with 503 busy and `Retry-After`,
   unread: WISEflow redelivers, nothing is lost (counted, and logged at most once per 10 s);
1. read the body, at most `SYNC_WEBHOOK_MAX_BODY` bytes (64 KiB), in bounded chunks (Content-Length
   checked first; chunked bodies counted as they arrive): over the limit -> 413, and the connection is
   closed instead of drained;
   a compressed body (any Content-Encoding but identity) -> 415 unread (ASSUMED: WISEflow sends plain
   JSON; the signature is over the raw bytes, and aiohttp's decoder can stall on a truncated deflate
   stream); a body not complete within `read_timeout` -> 408 (a slow sender cannot hold a handler);
2. verify the signature (and the Standard Webhooks timestamp) on the raw bytes -> 401;
3. parse the event strictly -> 400;
4. the default scheme's replay window on the body's `timestamp` -> 401;
5. commit to the inbox (new, or a redelivery of a stored event absorbed: `core.inbox_dedupe`) -> 200; a
   different event under a stored sequence is stored as new and reported (a WARNING, a counter); a
   database failure -> 503, so WISEflow redelivers.

Wiring (the composition root does this once the store is open; the route points at the receiver):
    receiver = WebhookReceiver(verifier_from_settings(settings), Inbox(store), clock, figures, signals.stored)
    add_webhook_routes(app, receiver)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

import aiosqlite
import orjson
from aiohttp import web

from service.adapters.read_budget import (
    MAX_UNVERIFIED_BYTES,
    Notice,
    ReadBudget,
    TooLarge,
    read_bounded,
    read_buffered,
)
from service.adapters.spans import current_traceparent
from service.adapters.store.connection import StoreError
from service.adapters.store.inbox import Inbox, Recorded
from service.core.clock import Clock
from service.core.signatures import WebhookVerifier
from service.core.webhook_events import MalformedEvent, WebhookEvent, parse_event
from service.core.webhook_figures import WebhookFigures
from service.errors import ConfigError, InvalidSignature
from service.settings import WEBHOOK_MAX_BODY, Settings

WEBHOOK_PATH: Final = "/webhooks/wiseflow"
# The default of SYNC_WEBHOOK_MAX_BODY (64 KiB).
MAX_BODY: Final = WEBHOOK_MAX_BODY
# Seconds a sender turned away for want of room in the read budget is asked to wait before trying again.
BUSY_RETRY_AFTER: Final = 1
# 5 s: half of WISEflow's 10 s delivery timeout, leaving the rest for the commit and the answer.
READ_TIMEOUT: Final = 5.0

log = logging.getLogger("service.webhooks")


class _Refused(Exception):
    """The request is refused: `status` and `reason` say why; `unread` when its body was not read whole."""

    def __init__(self, status: int, reason: str, *, unread: bool = False) -> None:
        self.status = status
        self.reason = reason
        self.unread = unread


def verifier_from_settings(settings: Settings) -> WebhookVerifier:
    """The configured verifier; `ConfigError` naming the variable (never the value) for an unusable secret.

    E.g. a ``whsec_`` secret that is not base64 under the standard scheme. The composition root can call
    this before it opens anything, so startup stops with one clear line instead of a traceback.
    """
    try:
        return WebhookVerifier(
            scheme=settings.webhook_scheme,
            secrets=tuple(s.reveal() for s in settings.webhook_secrets),
            signature_header=settings.webhook_signature_header,
            tolerance=settings.webhook_tolerance,
        )
    except ValueError as exc:
        raise ConfigError("WISEFLOW_WEBHOOK_SECRET", f"malformed: {exc}") from None


class WebhookReceiver:
    """The webhook endpoint's logic: one `handle` per request, answers short JSON without secrets."""

    def __init__(
        self,
        verifier: WebhookVerifier,
        inbox: Inbox,
        clock: Clock,
        figures: WebhookFigures | None = None,
        on_stored: Callable[[], None] | None = None,
        read_timeout: float = READ_TIMEOUT,
        max_body: int = MAX_BODY,
        max_unverified_bytes: int = MAX_UNVERIFIED_BYTES,
    ) -> None:
        self.verifier = verifier
        self.read_timeout = read_timeout
        self.max_body = max_body
        self.reads = ReadBudget(max_unverified_bytes)
        self._busy_notice = Notice()
        self.inbox = inbox
        self.clock = clock
        self.figures = figures or WebhookFigures()
        self._on_stored = on_stored

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one webhook delivery (see the module docstring for the order of checks)."""
        if request.method != "POST":
            # Routed here for every method so that a wrong one also gets a short JSON answer, not a page.
            response = _answer(405, {"error": "method_not_allowed"})
            response.headers["Allow"] = "POST"
            return response
        started = time.perf_counter()
        response = await self._receive(request)
        self.figures.ingest.observe(time.perf_counter() - started)
        return response

    @property
    def unverified(self) -> int:
        """Requests whose body is still on its way, right now."""
        return self.reads.waiting

    async def _receive(self, request: web.Request) -> web.Response:
        self.figures.received += 1
        now = self.clock.wall()
        try:
            event, body = await self._accept(request, now)
        except _Refused as exc:
            response = self._reject(exc.status, exc.reason)
            if exc.reason == "busy":
                response.headers["Retry-After"] = str(BUSY_RETRY_AFTER)
            if exc.unread:
                response.force_close()  # do not drain what we refused to read: drop the connection instead
            return response
        return await self._store(event, body, now)

    async def _accept(self, request: web.Request, now: float) -> tuple[WebhookEvent, bytes]:
        """The verified, parsed event and its raw body, or `_Refused` with the status to answer."""
        body = await self._read(request)
        try:
            return self._verify_and_parse(request, body, now), body
        except InvalidSignature as exc:
            raise _Refused(401, exc.reason) from None
        except MalformedEvent as exc:
            raise _Refused(400, exc.reason) from None
        except Exception:  # a bug must not become a 500; nothing was stored
            log.exception("webhook verification failed unexpectedly", extra={"event": "webhook.error"})
            raise _Refused(400, "bad_request") from None

    async def _read(self, request: web.Request) -> bytes:
        """The raw body, or `_Refused` (413, 415, 408 or 400), unread."""
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise _Refused(415, "unsupported_encoding", unread=True)
        try:
            if request.content.is_eof():
                # The whole body is already buffered (a small event arrives with its headers): taken in one
                # call, with no timer to arm, no read to await and nothing to hold in the read budget.
                return read_buffered(request, self.max_body)
            return await self._read_arriving(request)
        except TooLarge:
            raise _Refused(413, "too_large", unread=True) from None
        except _Refused:
            raise
        except Exception:  # a broken chunked body: the sender's fault, never a 500
            raise _Refused(400, "unreadable_body", unread=True) from None

    async def _read_arriving(self, request: web.Request) -> bytes:
        """A body still on its way, read within `read_timeout` while holding its size in the read budget."""
        declared = request.content_length
        if declared is not None and declared > self.max_body:
            raise TooLarge
        hold = None
        try:
            async with asyncio.timeout(self.read_timeout) as deadline:
                hold = self.reads.admit(deadline, self.max_body if declared is None else declared)
                if hold is None:
                    raise _Refused(503, "busy", unread=True)
                return await read_bounded(request, self.max_body)
        except TimeoutError:
            evicted = hold is not None and hold.evicted
            raise (
                _Refused(503, "busy", unread=True) if evicted else _Refused(408, "body_timeout", unread=True)
            ) from None
        finally:
            if hold is not None:
                self.reads.release(hold)

    def _verify_and_parse(self, request: web.Request, body: bytes, now: float) -> WebhookEvent:
        verified = self.verifier.verify(request.headers, body, now)
        event = parse_event(body, verified.message_id, verified.timestamp)
        if self.verifier.timestamp_in_body:
            self.verifier.check_body_timestamp(event.timestamp, now)
        return event

    async def _store(self, event: WebhookEvent, body: bytes, received_at: float) -> web.Response:
        status = "pending" if event.known else "unknown"
        try:
            recorded = await self.inbox.record(event, body, status, received_at, current_traceparent())
        except (aiosqlite.Error, StoreError, OSError):
            # Not acknowledged, so WISEflow redelivers it later: nothing is lost.
            log.exception(
                "webhook not stored", extra={"event": "webhook.store_failed", "sequence": event.sequence}
            )
            return self._reject(503, "unavailable")
        except Exception:
            log.exception("webhook store failed unexpectedly", extra={"event": "webhook.store_failed"})
            return self._reject(503, "unavailable")
        # Accepted and duplicate deliveries are the steady stream (counted in `figures`, kept in the inbox
        # tables): a JSON log line each at INFO cost about a sixth of a request's CPU, so they are DEBUG.
        if recorded is Recorded.DUPLICATE:
            self.figures.duplicates += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("webhook duplicate absorbed", extra={"event": "webhook.duplicate", **_context(event)})
            return _answer_bytes(200, _DUPLICATE)
        if recorded is Recorded.REUSED:
            # Not the steady stream: WISEflow promised a sequence per event. Stored, so nothing is lost; said,
            # so that a sender numbering from 1 again (or worse) is seen. Ids and the event type only.
            self.figures.sequence_reused += 1
            log.warning(
                "webhook sequence reused by a different event: stored as a new event",
                extra={"event": "webhook.sequence_reused", **_context(event)},
            )
        if not event.known:
            self.figures.unknown += 1
            log.warning(
                "webhook of an unknown event type stored", extra={"event": "webhook.unknown", **_context(event)}
            )
            return _answer_bytes(200, _STORED_UNKNOWN)
        self.figures.accepted += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("webhook stored", extra={"event": "webhook.accepted", **_context(event)})
        if self._on_stored is not None:
            self._on_stored()
        return _answer_bytes(200, _ACCEPTED)

    def _reject(self, status: int, reason: str) -> web.Response:
        self.figures.reject(reason)
        if reason == "busy":
            # A crowd of slow senders can make many of these a second: one line per 10 s, with the count.
            turned_away = self._busy_notice.count(self.clock.monotonic())
            if turned_away is not None:
                log.warning(
                    "webhook senders turned away: too many bodies on their way at once",
                    extra={"event": "webhook.busy", "count": turned_away, "status": status},
                )
        elif status != 503:
            log.info(
                "webhook rejected", extra={"event": "webhook.rejected", "reason": reason, "status": status}
            )
        return _answer(status, {"error": reason})


def _context(event: WebhookEvent) -> dict[str, object]:
    """What a log line says about a stored event (never its body)."""
    return {"sequence": event.sequence, "webhook_event": event.event, "flow_id": event.flow_id}


# The 200 answers, encoded once: they are on every accepted request's path.
_ACCEPTED: Final = orjson.dumps({"status": "accepted"})
_DUPLICATE: Final = orjson.dumps({"status": "duplicate"})
_STORED_UNKNOWN: Final = orjson.dumps({"status": "stored_unknown"})


def _answer(status: int, doc: dict[str, str]) -> web.Response:
    """A short JSON answer."""
    return _answer_bytes(status, orjson.dumps(doc))


def _answer_bytes(status: int, body: bytes) -> web.Response:
    """A JSON answer from an encoded body."""
    return web.Response(body=body, status=status, content_type="application/json")


def add_webhook_routes(app: web.Application, receiver: WebhookReceiver) -> None:
    """Route `/webhooks/wiseflow` of `app` to `receiver`: POST is a delivery, any other method a JSON 405."""
    app.router.add_route("*", WEBHOOK_PATH, receiver.handle)
