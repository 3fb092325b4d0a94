"""A sync run's requests, counted on the wire: every request it sends, token requests and retries included.

The HTTP client reports each request it sent (`note_request`, from its request hook) by route template
(`GET /flow/{id}/assessments`); the request is attributed to the tally of the run whose task sent it. A
run opens its tally with `tallying()`; the tally lives in a context variable, so the run's own tasks
(which copy the context when they start) count into it, and a webhook refresh running beside the run
does not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final

# Routes whose answers are pages of a listing: "pages" of a run are the requests to these.
PAGED_ROUTES: Final = frozenset(
    {"POST /flows/search", "GET /flows/{id}/participants", "POST /participation-events"}
)


@dataclass(slots=True)
class RequestTally:
    """Requests by route ("METHOD /route/{id}")."""

    by_route: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        """Every request counted."""
        return sum(self.by_route.values())

    @property
    def pages(self) -> int:
        """Requests for a page of a listing (retries of a page included)."""
        return sum(n for route, n in self.by_route.items() if route in PAGED_ROUTES)


_current: ContextVar[RequestTally | None] = ContextVar("wiseflow_sync_request_tally", default=None)


def note_request(route: str) -> None:
    """Count one request that left the process, for the run (if any) of the calling task."""
    tally = _current.get()
    if tally is not None:
        tally.by_route[route] += 1


@contextmanager
def tallying(tally: RequestTally) -> Iterator[RequestTally]:
    """Count the requests of this task (and of the tasks it starts) into `tally` until the block ends."""
    token = _current.set(tally)
    try:
        yield tally
    finally:
        _current.reset(token)
