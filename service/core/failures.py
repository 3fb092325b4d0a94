"""The one error policy: what an exception means for the loop that caught it.

    classify(exc)   STOP_AND_WAIT      WISEflow as a whole cannot be used now (breaker open, a rate pause,
                                       unavailable or in maintenance, credentials refused): stop this pass,
                                       blame no item, try again later
                    RETRY_ITEM_LATER   something of ours failed (the database: a `StoreError`, which the
                                       store's adapter raises for any driver error): the item is fine,
                                       try it again later without counting an attempt against it
                    BLAME_ITEM         about this item (a 404, a 4xx, a malformed record, the SIS refused
                                       it): count an attempt against it, and go on with the others

A `SinkError` is judged the same way about the SIS: refused (a 4xx such as 400, 409, 422) blames the grade;
no answer, a redirect, 401, 403, 404, 405, 408, 413 (for a grade's small record), 429 or 5xx mean the SIS
as a whole is unwell or wrongly configured: stop and wait.

Every loop (poller, inbox worker, catch-up, outbox deliverer, the app's loop guard) asks `classify`
instead of keeping its own tuple of exception types, and `describe` is the one safe line for logs and
stored errors: our own errors never carry secrets or personal data; anything else is named by type only.
"""

from __future__ import annotations

import enum
from typing import Final

from service.errors import (
    ApiUnavailable,
    AuthError,
    CircuitOpen,
    RateLimited,
    ServiceError,
    SinkError,
    StoreError,
)

# What parsing a malformed item raises (a missing key, "abc" for an id, a list for an object).
BAD_DATA: Final = (KeyError, ValueError, TypeError)
# The longest description stored or logged: errors are labels, not documents.
MAX_DESCRIPTION: Final = 500


class Verdict(enum.Enum):
    """What the caller does about a failure."""

    STOP_AND_WAIT = "stop_and_wait"
    RETRY_ITEM_LATER = "retry_item_later"
    BLAME_ITEM = "blame_item"


def classify(exc: BaseException) -> Verdict:
    """The verdict on `exc` (see the module docstring)."""
    if isinstance(exc, CircuitOpen | RateLimited | ApiUnavailable | AuthError):
        return Verdict.STOP_AND_WAIT
    if isinstance(exc, SinkError):
        return Verdict.BLAME_ITEM if exc.refused else Verdict.STOP_AND_WAIT
    if isinstance(exc, StoreError | OSError):
        return Verdict.RETRY_ITEM_LATER
    return Verdict.BLAME_ITEM


def retry_after(exc: BaseException) -> float | None:
    """Seconds WISEflow (or the breaker) asked us to stay away, when the error carries it."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None


def needs_operator(exc: BaseException) -> bool:
    """True when waiting alone cannot cure it (refused credentials): a run fails instead of pausing."""
    return isinstance(exc, AuthError)


def describe(exc: BaseException) -> str:
    """One short, safe line for a log field or a stored `last_error`."""
    if isinstance(exc, ServiceError):
        text = f"{type(exc).__name__}: {exc}"
    elif isinstance(exc, BAD_DATA):
        text = f"unexpected data from WISEflow ({type(exc).__name__})"  # its message may quote the data
    else:
        text = type(exc).__name__
    return text[:MAX_DESCRIPTION]
