"""Webhook figures for metrics and the certification report: counters kept in memory since start.

Durable figures (events by status, dead letters, the oldest pending event) come from the inbox queries;
these are the ones only the running process sees (rejections never reach the database).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

# Seconds: an accepted webhook answers in about a millisecond when the disk is well; 10 s is WISEflow's
# delivery timeout.
INGEST_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class BucketCounts:
    """A latency histogram for one writer (the event loop): a bisect and two additions, no lock.

    prometheus_client's Histogram takes a lock per observation; the webhook path is the hot one, and the
    exporter reads these counts at scrape time instead.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = INGEST_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation in the first bucket whose upper bound it does not exceed."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets: (upper bound, observations at or below it), ending with +Inf."""
        out, running = [], 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


@dataclass(slots=True)
class WebhookFigures:
    """Counters of the webhook receiver and worker; `snapshot()` gives them as plain values."""

    received: int = 0  # every request to the endpoint, whatever became of it
    accepted: int = 0  # verified and newly stored
    duplicates: int = 0  # verified, the same event (sequence, event, flow, participant) redelivered: absorbed
    sequence_reused: int = 0  # verified and stored as new, although its sequence names another stored event
    unknown: int = 0  # verified, an event type we do not handle: stored as 'unknown'
    rejected: Counter[str] = field(default_factory=Counter)  # by reason: bad_signature, too_large, ...
    processed: int = 0
    superseded: int = 0  # done without a call: a refresh of its flow and kind began after it arrived
    failures: int = 0
    dead_lettered: int = 0
    lag_last: float = 0.0  # seconds from receipt to processing, of the last processed event
    lag_max: float = 0.0
    lag_sum: float = 0.0
    ingest: BucketCounts = field(default_factory=BucketCounts)  # seconds per webhook request, answered

    def reject(self, reason: str) -> None:
        """Count one refused request under `reason`."""
        self.rejected[reason] += 1

    def record_lag(self, seconds: float) -> None:
        """Record one event's processing lag (receipt to done)."""
        lag = max(0.0, seconds)
        self.processed += 1
        self.lag_last = lag
        self.lag_max = max(self.lag_max, lag)
        self.lag_sum += lag

    def snapshot(self) -> dict[str, object]:
        """Every figure as plain JSON-ready values."""
        return {
            "received": self.received,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "sequence_reused": self.sequence_reused,
            "unknown": self.unknown,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
            "processed": self.processed,
            "superseded": self.superseded,
            "failures": self.failures,
            "dead_lettered": self.dead_lettered,
            "lag_last_seconds": round(self.lag_last, 3),
            "lag_max_seconds": round(self.lag_max, 3),
            "lag_mean_seconds": round(self.lag_sum / self.processed, 3) if self.processed else 0.0,
        }
