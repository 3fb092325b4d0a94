"""Credentials: OAuth 2.0 client credentials (the default) or the static `x-api-key`.

The OAuth token lives in this object only (never on disk, never in a log). It is attached to a request
after the request's rate-limit wait, and renewed before it expires (`renewal_margin`: 10% of its
lifetime, at least the connect timeout, at most 60 s, counted from when the token request left), so it
cannot expire between the wait and the server; concurrent callers share one token request
(single flight); after a 401 the client drops the token it used and asks here once more. WISEflow issues
no refresh token, so "refresh" means a new client-credentials grant.

Refused credentials (400 `invalid_client`) raise `AuthError` with a message naming the error code only,
are logged once per streak, and are not tried again before a slow, doubling delay (30 s up to 15 min):
every caller in between gets the same `AuthError` without a request, instead of a hot loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final, Protocol

from service.core.backoff import backoff_ceiling
from service.core.clock import Clock
from service.core.redact import MASK
from service.core.retry_after import parse_delta_seconds
from service.errors import ApiUnavailable, AuthError
from service.settings import Settings

from .door import Door
from .records import Reply, Request, error_code, error_for

log = logging.getLogger(__name__)
TOKEN_PATH: Final = "/oauth2/token"  # noqa: S105 - a URL path, not a password
# WISEflow's documented lifetime, used when a token answer omits or garbles `expires_in`.
DEFAULT_EXPIRES_IN: Final = 3599.0


class Credentials(Protocol):
    """What the client needs from a credential: headers, and whether a 401 is worth one more try."""

    can_refresh: bool

    async def headers(self, request: Request) -> dict[str, str]: ...

    def current(self) -> dict[str, str] | None: ...

    def invalidate(self, used: Mapping[str, str]) -> None: ...

    def close(self) -> None: ...


class ApiKeyAuth:
    """The static token header; a 401 cannot be cured by asking again."""

    can_refresh = False

    def __init__(self, api_key: str) -> None:
        self._headers = {"x-api-key": api_key}

    async def headers(self, request: Request) -> dict[str, str]:
        """The x-api-key header."""
        return dict(self._headers)

    def current(self) -> dict[str, str] | None:
        """The x-api-key header: it never ages."""
        return dict(self._headers)

    def invalidate(self, used: Mapping[str, str]) -> None:
        """Nothing to renew."""

    def close(self) -> None:
        """Nothing to stop."""


class OAuthTokens:
    """Client-credentials tokens, fetched through the client's one door (admitted like any request), single
    flight."""

    can_refresh = True

    def __init__(
        self,
        settings: Settings,
        door: Door,
        clock: Clock,
        *,
        retry_base: float = 30.0,
        retry_cap: float = 900.0,
    ) -> None:
        if settings.client_id is None or settings.client_secret is None:
            raise ValueError("OAuthTokens needs WISEFLOW_CLIENT_ID and WISEFLOW_CLIENT_SECRET")
        self._form = {
            "grant_type": "client_credentials",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.reveal(),
        }
        self._door = door
        self._clock = clock
        # The longest a request can take to reach the server once its token is attached.
        self._in_flight = settings.connect_timeout
        self._retry_base, self._retry_cap = retry_base, retry_cap
        self._token: str | None = None
        self._renew_at = 0.0
        self._failures = 0
        self._failed_until = 0.0
        self._failure: AuthError | None = None
        self._inflight: asyncio.Task[str] | None = None
        self.fetches = 0  # token requests sent: tests and the certification answers count them
        # The last token answer with its tokens masked (lifetime, type, scope as WISEflow stated them), so
        # `preflight` can report and validate it without ever holding the token itself.
        self.last_answer: dict[str, Any] | None = None

    async def headers(self, request: Request) -> dict[str, str]:
        """A bearer header with a token valid for a while yet; fetches one when needed (single flight).

        The token request is `request`'s: its attempt, and the sync run it counts for (`request.tally`).
        """
        if (fresh := self.current()) is not None:
            return fresh
        if self._failure is not None and self._clock.monotonic() < self._failed_until:
            raise AuthError(self._failure.message, method="POST", path=TOKEN_PATH, status=self._failure.status)
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._fetch(request))
            self._inflight.add_done_callback(self._fetched)
        # shield: one caller giving up (cancelled, deadline) must not cancel the others' token request.
        token = await asyncio.shield(self._inflight)
        return {"Authorization": f"Bearer {token}"}

    def current(self) -> dict[str, str] | None:
        """The bearer header while the token is before its renewal point, else None (renew first)."""
        if self._token is not None and self._clock.monotonic() < self._renew_at:
            return {"Authorization": f"Bearer {self._token}"}
        return None

    def invalidate(self, used: Mapping[str, str]) -> None:
        """Forget the token that drew a 401, unless a newer one has replaced it already."""
        if self._token is not None and used.get("Authorization") == f"Bearer {self._token}":
            self._token = None

    def close(self) -> None:
        """Cancel a token request in flight (shutdown)."""
        if self._inflight is not None:
            self._inflight.cancel()

    def _fetched(self, task: asyncio.Task[str]) -> None:
        self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody awaited anymore is not reported twice

    async def _fetch(self, cause: Request) -> str:
        self.fetches += 1
        token_request = Request(
            "POST", TOKEN_PATH, cause.attempt, data=self._form, urgent=True, tally=cause.tally
        )
        reply, _ = await self._door.send(token_request)
        token = _access_token(reply.body) if reply.ok else None
        if token is not None:
            self._accept(token, reply.body, reply.sent)
            return token
        if reply.status in (400, 401):
            raise self._refused(reply)
        if reply.ok:
            # A 200 without a usable token (an HTML page, truncated JSON, no access_token) is the server's
            # fault, not the credentials': ApiUnavailable stops a run (one error, not one per flow).
            raise ApiUnavailable("WISEflow's token answer carried no access_token", **reply.context())
        raise error_for(reply, reply.retry_after)

    def _accept(self, token: str, body: Any, sent: float) -> None:
        lifetime = _expires_in(body)
        self._token = token
        # Counted from when the token request left, not from its answer: the server's clock started sooner.
        self._renew_at = sent + lifetime - renewal_margin(lifetime, self._in_flight)
        self.last_answer = _masked_answer(body)
        if self._failures:
            log.warning("WISEflow accepted the client credentials again", extra={"event": "wiseflow.auth_ok"})
        self._failures, self._failure = 0, None
        log.debug("WISEflow token obtained", extra={"event": "wiseflow.token", "expires_in": lifetime})

    def _refused(self, reply: Reply) -> AuthError:
        code = error_code(reply.body) or "refused"
        self._failures += 1
        wait = backoff_ceiling(self._failures, base=self._retry_base, cap=self._retry_cap)
        self._failed_until = self._clock.monotonic() + wait
        self._failure = AuthError(
            f"WISEflow refused the client credentials ({code}); check WISEFLOW_CLIENT_ID and "
            f"WISEFLOW_CLIENT_SECRET, next try in {wait:.0f}s",
            **reply.context(),
        )
        level = logging.ERROR if self._failures == 1 else logging.DEBUG  # once per streak, not per caller
        fields = {"event": "wiseflow.auth_failed", "x_trace_id": reply.trace_id, "code": code, "retry_in": wait}
        log.log(level, "WISEflow refused the client credentials", extra=fields)
        return self._failure


def _masked_answer(body: Any) -> dict[str, Any] | None:
    """A token answer with `access_token` and `refresh_token` replaced by a mask (still strings)."""
    if not isinstance(body, dict):
        return None
    return {k: (MASK if k in ("access_token", "refresh_token") else v) for k, v in body.items()}


def renewal_margin(lifetime: float, in_flight: float) -> float:
    """How long before expiry a token is renewed: 10% of its life, at least `in_flight`, at most 60 s.

    The token is attached after the rate wait, so what it must survive is the trip to the server: the
    connect timeout bounds it. Half the lifetime caps the margin, so a very short token is still used.
    """
    return min(60.0, max(0.1 * lifetime, min(in_flight, lifetime / 2)))


def _access_token(body: Any) -> str | None:
    token = body.get("access_token") if isinstance(body, dict) else None
    return token if isinstance(token, str) and token else None


def _expires_in(body: Any) -> float:
    """The token's lifetime: `expires_in` as a number or a numeric string; else the documented hour.

    Zero, negative, absurd (over ten days) or garbled values fall back to 3599 s: should the server
    really drop the token sooner, its 401 costs one re-authentication and one replay, nothing more.
    """
    value = body.get("expires_in") if isinstance(body, dict) else None
    if isinstance(value, str):
        value = parse_delta_seconds(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 10 * 86400:
        return float(value)
    return DEFAULT_EXPIRES_IN
