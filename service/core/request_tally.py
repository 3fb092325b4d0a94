"""A sync run's requests, counted on the wire: every request it sends, token requests and retries included.

The run hands its `RequestTally` to the calls it makes: it reaches WISEflow through `api.counting(tally)`
(`WiseflowApi.counting`), a view of the one client whose requests carry the tally; the transport counts
each request that leaves into the tally it carries, by route template (`GET /flow/{id}/assessments`),
and so does the token request a run's call starts. A webhook refresh running beside the run uses the
client itself, whose requests carry no tally: they are not the run's.
"""

from __future__ import annotations

from collections import Counter
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

    def count(self, route: str) -> None:
        """One request to `route` left the process."""
        self.by_route[route] += 1

    @property
    def total(self) -> int:
        """Every request counted."""
        return sum(self.by_route.values())

    @property
    def pages(self) -> int:
        """Requests for a page of a listing (retries of a page included)."""
        return sum(n for route, n in self.by_route.items() if route in PAGED_ROUTES)
