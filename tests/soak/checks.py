"""What the chaos soak checks, as pure functions over what the simulator recorded (no I/O, no clock).

The inputs are the simulator's journal lines (`time` = arrival, `answered`, `status`, `retryAfter`,
`headers`), the fake SIS's deliveries, the delivery log of webhooks, the truth and the exported mirror.
Each function returns the problems it found (empty when the property holds), so the soak can print every
figure before it asserts.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]
Pair = tuple[int, int]
Version = tuple[Any, Any, Any]  # (grade, adminGrade, date)

# Both stamps of a journal line come from the simulator's wall clock (time.time(), microseconds), and the
# client measures its wait on its own monotonic clock from the moment it read the answer, which is after
# `answered`. What is left to allow for is float rounding and the two clocks' slew over a few seconds.
GRANULARITY = 0.01
# A request that arrived this soon after a 429/503 was answered may have left the client before the client
# could read that answer (several requests are in flight at once): it is not a request "inside" the pause.
IN_FLIGHT = 0.25


@dataclass(frozen=True, slots=True)
class Violation:
    """A request that arrived while a Retry-After given earlier had not elapsed."""

    refused_at: float
    status: int
    retry_after: float
    arrived: float
    path: str

    def __str__(self) -> str:
        early = self.refused_at + self.retry_after - self.arrived
        return (
            f"{self.path} arrived {early:.3f} s before the Retry-After {self.retry_after:g} s "
            f"of a {self.status} answered at {self.refused_at:.3f}"
        )


def retry_after_violations(journal: Sequence[Json]) -> list[Violation]:
    """Requests (of the one credential) that arrived inside a Retry-After given by a 429 or 503 before them."""
    lines = sorted(journal, key=lambda line: line["time"])
    arrivals = [line["time"] for line in lines]
    found: list[Violation] = []
    for refused in lines:
        wait = _seconds(refused.get("retryAfter"))
        if refused["status"] not in (429, 503) or not wait:
            continue
        opens, closes = refused["answered"] + IN_FLIGHT, refused["answered"] + wait - GRANULARITY
        for later in lines[bisect_left(arrivals, opens) :]:
            if later["time"] >= closes:
                break
            if later["time"] > opens:
                found.append(
                    Violation(refused["answered"], refused["status"], wait, later["time"], later["path"])
                )
    return found


def busiest(times: Iterable[float], period: float) -> int:
    """The most arrivals inside any half-open window [t, t + period)."""
    ordered = sorted(times)
    return max((bisect_left(ordered, t + period) - i for i, t in enumerate(ordered)), default=0)


def by_client_name(journal: Iterable[Json]) -> dict[str, list[float]]:
    """Arrival times grouped by the request's `X-Client-Name` (one name per process in the soak)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for line in journal:
        groups[client_name(line)].append(line["time"])
    return dict(groups)


def client_name(line: Json) -> str:
    """The `X-Client-Name` a journalled request carried."""
    return next((v for k, v in line["headers"].items() if k.lower() == "x-client-name"), "?")


GRADE_FIELDS = ("flowId", "participantId", "grade", "adminGrade", "date")


def record_of(delivery: Mapping[str, Any]) -> tuple[Any, ...]:
    """The grade version an SIS delivery carries: flowId, participantId, grade, adminGrade, date."""
    return tuple(delivery[name] for name in GRADE_FIELDS)


def key_problems(deliveries: Sequence[Json]) -> tuple[list[str], list[str]]:
    """(keys sent with two different records, records sent under two different keys)."""
    records: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    keys: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for delivery in deliveries:
        record = record_of(delivery)
        records[delivery["idempotencyKey"]].add(record)
        keys[record].add(delivery["idempotencyKey"])
    reused = [f"{key}: {sorted(map(str, seen))}" for key, seen in records.items() if len(seen) > 1]
    split = [f"{record}: {sorted(seen)}" for record, seen in keys.items() if len(seen) > 1]
    return reused, split


def truth_grades(truth: Json) -> dict[Pair, Version]:
    """Every participant's assessment as the simulator holds it (empty grades as None)."""
    return {
        (f["flow"]["id"], a["participantId"]): (
            a.get("grade") or None,
            a.get("adminGrade") or None,
            a.get("date"),
        )
        for f in truth["flows"]
        for a in f["assessments"]
    }


def mirror_grades(rows: Iterable[Json]) -> dict[Pair, Version]:
    """The exported mirror (`export grades --format jsonl` rows), keyed like `truth_grades`."""
    return {(r["flowId"], r["participantId"]): (r["grade"], r["adminGrade"], r["date"]) for r in rows}


def differences(expected: Mapping[Pair, Version], actual: Mapping[Pair, Version]) -> list[str]:
    """Each participant whose version differs, is missing or is extra, as one line."""
    pairs = sorted(set(expected) | set(actual))
    return [
        f"{p}: truth {expected.get(p)} mirror {actual.get(p)}"
        for p in pairs
        if expected.get(p) != actual.get(p)
    ]


def sis_problems(expected: Mapping[Pair, Version], deliveries: Sequence[Json]) -> list[str]:
    """Graded participants whose truth never reached the SIS, or whose last delivery is not the truth."""
    last: dict[Pair, Version] = {}
    sent: set[tuple[Any, ...]] = set()
    for delivery in deliveries:
        flow, participant, grade, admin_grade, date = record_of(delivery)
        last[(flow, participant)] = (grade, admin_grade, date)
        sent.add(record_of(delivery))
    problems = []
    for pair, version in sorted(expected.items()):
        if version[0] is None and version[1] is None:
            continue  # not graded: nothing to deliver
        if (*pair, *version) not in sent:
            problems.append(f"{pair}: {version} never delivered")
        elif last.get(pair) != version:
            problems.append(f"{pair}: last delivered {last.get(pair)}, truth {version}")
    return problems


def unprocessed(acknowledged: Iterable[int], inbox: Mapping[int, str]) -> list[str]:
    """Webhook sequences answered 200 whose inbox row is missing or not done."""
    return [
        f"sequence {s}: {inbox.get(s, 'missing')}" for s in sorted(set(acknowledged)) if inbox.get(s) != "done"
    ]


def _seconds(raw: Any) -> float:
    """A Retry-After in seconds (the simulator only sends delta-seconds); 0 when absent or not a number."""
    try:
        return max(float(raw), 0.0)
    except (TypeError, ValueError):
        return 0.0
