"""The one error hierarchy of wiseflow-sync.

    ServiceError
     +-- ConfigError            a setting is missing or malformed (names the variable, never its value)
     +-- ApiError               WISEflow answered badly or not at all (method, path, status, trace id, attempt)
     |    +-- RateLimited       429, or a Retry-After longer than we are willing to hold a task for
     |    +-- ApiUnavailable    5xx, timeouts, refused connections, maintenance windows
     |    +-- AuthError         the credentials were refused (400 invalid_client, repeated 401)
     +-- CircuitOpen            the breaker is open: no request left the process
     +-- WiseflowPaused         a saved pause outlasts what a command may wait: nothing was sent (exit 75)
     +-- InvalidSignature       a webhook failed verification (reason is safe to log)
     +-- SinkError              the SIS sink did not accept a delivery
     +-- StoreError             the database cannot be used (not SQLite, newer schema, read-only, full),
          |                     or a statement failed (locked past the busy timeout, disk full)
          +-- DatabaseBusy      another process held its write lock past the busy timeout: try again

Adapters translate library errors with ``raise ... from exc``; HTTP handlers map these to status codes in
one place. No message here ever contains a secret, a token, a query string or personal data.
"""

from __future__ import annotations

from typing import Final


class ServiceError(Exception):
    """Base of every error wiseflow-sync raises on purpose."""


class ConfigError(ServiceError):
    """A setting is missing or malformed; the message names the variable, never its value."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class ApiError(ServiceError):
    """WISEflow answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
        trace_id: str | None = None,
        attempt: int = 1,
    ) -> None:
        self.message = message
        self.method = method
        self.path = path
        self.status = status
        self.trace_id = trace_id
        self.attempt = attempt
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [self.message]
        if self.method or self.path:
            parts.append(f"{self.method} {self.path}".strip())
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.trace_id:
            parts.append(f"x-trace-id={self.trace_id}")
        parts.append(f"attempt={self.attempt}")
        return " | ".join(parts)


class RateLimited(ApiError):
    """WISEflow asked us to wait longer than a caller may hold a task; ``retry_after`` is in seconds."""

    def __init__(self, message: str, *, retry_after: float, **context: object) -> None:
        self.retry_after = retry_after
        super().__init__(f"{message} (retry after {retry_after:.1f}s)", **context)  # type: ignore[arg-type]


class ApiUnavailable(ApiError):
    """WISEflow is down, in maintenance, or timing out; ``retry_after`` is set when it said so."""

    def __init__(self, message: str, *, retry_after: float | None = None, **context: object) -> None:
        self.retry_after = retry_after
        suffix = f" (retry after {retry_after:.1f}s)" if retry_after is not None else ""
        super().__init__(message + suffix, **context)  # type: ignore[arg-type]


class AuthError(ApiError):
    """The credentials were refused; the message never carries them."""


class CircuitOpen(ServiceError):
    """The breaker for an API base URL is open; nothing was sent. ``retry_after`` is until the probe."""

    def __init__(self, base_url: str, retry_after: float, reason: str) -> None:
        self.base_url = base_url
        self.retry_after = retry_after
        self.reason = reason
        super().__init__(f"circuit open for {base_url}: {reason} (next probe in {retry_after:.1f}s)")


class WiseflowPaused(ServiceError):
    """WISEflow's saved pause outlasts what a command may wait; nothing was sent. ``remaining`` in seconds."""

    def __init__(self, command: str, message: str, *, reason: str, remaining: float) -> None:
        self.command = command  # "webhooks ensure": the CLI's one line names it
        self.reason = reason
        self.remaining = remaining
        super().__init__(message)


class InvalidSignature(ServiceError):
    """A webhook failed verification; ``reason`` is a short, safe label for logs and metrics."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid webhook signature: {reason}")


# Answers that say the SIS or our configuration of it is wrong, whatever the record: the credentials (401,
# 403), the address (404, 405). A 413 too, for a body as small as a grade record (`SMALL_BODY`).
SIS_FAULTS: Final = frozenset({401, 403, 404, 405})
# Bytes: a grade record is a few hundred; an SIS refusing this much as too large has a broken limit.
SMALL_BODY: Final = 16 * 1024


class SinkError(ServiceError):
    """The SIS sink refused or failed a delivery; ``retry_after`` is set when the SIS said how long to wait;
    ``body_size`` is the size of the record sent, when known."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        body_size: int | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.body_size = body_size
        super().__init__(message if status is None else f"{message} (status={status})")

    @property
    def misconfigured(self) -> bool:
        """The SIS or our configuration of it is wrong (401, 403, 404, 405, a 413 for a small record)."""
        if self.status == 413:
            return self.body_size is None or self.body_size <= SMALL_BODY
        return self.status in SIS_FAULTS

    @property
    def refused(self) -> bool:
        """The SIS answered and refused this record (400, 409, 422 ...): the record's fault.

        Anything else (no answer, a redirect, 408, 429, 5xx, and what `misconfigured` names) says the SIS
        is unwell or wrongly set up, for every record alike.
        """
        if self.status is None or not 400 <= self.status < 500 or self.status in (408, 429):
            return False
        return not self.misconfigured


class StoreError(ServiceError):
    """The database cannot be used (not SQLite, a newer schema than this code, read-only, full).

    The store's adapter raises it ``from`` the driver's error for a statement that failed too (locked past
    the busy timeout, disk full), so nothing outside the adapter needs to know which database it is.
    """


class DatabaseBusy(StoreError):
    """Another process held the database's write lock beyond the busy timeout: try again later."""
