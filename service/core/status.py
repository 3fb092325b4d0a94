"""What `/status` and `/metrics` show beyond the tables: the process's own running figures, as one snapshot.

The HTTP side reads a `StatusSnapshot`, never the client's or the loops' internals; the composition root
hands the board one reading of the WISEflow client (`ClientFigures`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.core.run_summary import RunSummary


@dataclass(frozen=True, slots=True)
class ClientFigures:
    """The WISEflow client's running figures at one moment."""

    breaker: str  # closed | open | half_open
    requests: int  # requests sent since start (token requests and retries included)
    token_requests: int = 0
    auth_recoveries: int = 0
    paused_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """The running figures at one moment."""

    client: ClientFigures
    runs: int
    shutting_down: bool
    sink_paused: bool = False  # grade delivery is paused: the SIS is unwell or refuses us (`outbox.paused`)


class StatusBoard:
    """Collects the running figures: runs as they end, shutdown, and readings of the WISEflow client."""

    def __init__(self, read_client: Callable[[], ClientFigures]) -> None:
        self._read_client = read_client
        self.runs = 0
        self.shutting_down = False
        self.sink_paused = False

    def record_run(self, summary: RunSummary) -> None:
        """A sync run ended (what it did is in the database: `/status` reads the last run there)."""
        self.runs += 1

    def record_sink_pause(self, paused: bool) -> None:
        """The outbox deliverer paused delivery to the SIS (True) or resumed it (False)."""
        self.sink_paused = paused

    def snapshot(self) -> StatusSnapshot:
        """The figures now."""
        return StatusSnapshot(self._read_client(), self.runs, self.shutting_down, self.sink_paused)
