"""What the console's pages show, gathered from the objects the service already has: plain values for the
templates, formatted here so that the templates only lay them out.

Only counts, statuses, times, run ids, request paths (ids, never a query string) and X-Trace-Ids: the
sources hold no grade and no name, and nothing here reads a body or a setting that is a secret.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from service.adapters.ops_http import Ops, inbox_counts, outbox_counts, readiness_of
from service.adapters.store import console
from service.adapters.store.pause import SqlitePauseStore
from service.adapters.store.unit import SqliteUnitOfWork
from service.certify import TITLES, build, field_label, field_text
from service.certify.model import EndpointUse
from service.core.run_record import Changes, RunRecord

RUNS_SHOWN: Final = 10
REQUESTS_SHOWN: Final = 15
INBOX_STATES: Final = ("pending", "done", "dead", "unknown")
OUTBOX_STATES: Final = ("pending", "delivered", "dead")


def clock_time(at: float | None) -> str:
    """A Unix time as `2026-05-04 09:12:03 UTC` ("" for None)."""
    if at is None:
        return ""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short_time(at: float) -> str:
    """A Unix time for a table cell, UTC without the year: `05-04 09:12:03`."""
    return datetime.fromtimestamp(at, UTC).strftime("%m-%d %H:%M:%S")


def span(seconds: float) -> str:
    """A duration for a reader: `850 ms`, `12.4 s`, `3 min 20 s`, `2 h 5 min`."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass(frozen=True, slots=True)
class Run:
    """A recorded run as a row of the console's table (what `wiseflow-sync runs` prints)."""

    run_id: int
    command: str
    started: str
    duration: str
    outcome: str
    requests: int
    flows: str  # added, changed, removed: `+2 ~1 -0`
    participants: str
    grades: str
    queued: int  # grade versions put in the outbox for the SIS
    error: str


@dataclass(frozen=True, slots=True)
class Request:
    """A journalled WISEflow request as a row of the console's table."""

    at: str
    method: str
    path: str
    status: str  # the code, or "no answer"
    status_class: str  # ok | warn | bad: the row's colour, beside the code itself
    duration: str
    attempt: int
    trace_id: str


def _changes(c: Changes) -> str:
    return f"+{c.added} ~{c.changed} -{c.removed}"


def _run(record: RunRecord, now: float) -> Run:
    ended = record.finished_at if record.finished_at is not None else now
    counts = record.counts
    return Run(
        record.id,
        record.command or "",
        short_time(record.started_at),
        span(max(ended - record.started_at, 0.0)) + ("" if record.finished_at is not None else " so far"),
        record.outcome,
        record.requests,
        _changes(counts.flows),
        _changes(counts.participants),
        _changes(counts.grades),
        counts.queued,
        record.error or "",
    )


def _request(row: console.RequestRow) -> Request:
    status = "no answer" if row.status is None else str(row.status)
    kind = "bad" if row.status is None or row.status >= 500 else "warn" if row.status >= 400 else "ok"
    duration = span(row.duration_ms / 1000)
    return Request(
        short_time(row.at), row.method, row.path, status, kind, duration, row.attempt, row.trace_id or ""
    )


async def _pause(ops: Ops, now: float) -> dict[str, Any]:
    """The saved pause as `pause show` reads it: in force or not, until when, why, how long is left."""
    saved = await SqlitePauseStore(ops.store, ops.clock).load()
    if saved is None or saved.until <= now:
        return {"active": False, "until": "", "reason": "", "left": ""}
    left = span(saved.until - now)
    return {"active": True, "until": clock_time(saved.until), "reason": saved.reason, "left": left}


async def overview(ops: Ops) -> dict[str, Any]:
    """Everything `GET /` shows, read now."""
    now = ops.clock.wall()
    verdict = await readiness_of(ops)
    async with ops.uow.read() as unit:
        last_ok = await unit.runs.last_success_at()
        runs = await unit.runs.latest(RUNS_SHOWN)
    inbox, outbox = await inbox_counts(ops), await outbox_counts(ops)
    oldest = await console.oldest_pending_grade_at(ops.store)
    requests = [_request(r) for r in await console.latest_requests(ops.store, REQUESTS_SHOWN)]
    status = ops.status.snapshot()
    return {
        "now": clock_time(now),
        "ready": verdict.ready,
        "ready_reason": verdict.reason,
        "breaker": status.client.breaker,
        "sink": "none" if ops.settings.sink_url is None else "paused" if status.sink_paused else "delivering",
        "pause": await _pause(ops, now),
        "last_ok": "never" if last_ok is None else f"{span(max(now - last_ok, 0.0))} ago",
        "runs": [_run(r, now) for r in runs],
        "inbox": {state: inbox.get(state, 0) for state in INBOX_STATES},
        "outbox": {state: outbox.get(state, 0) for state in OUTBOX_STATES},
        "oldest_pending": "" if oldest is None else span(max(now - oldest, 0.0)),
        "requests": requests,
        "example_trace": next((r.trace_id for r in requests if r.trace_id), ""),
    }


async def certification(ops: Ops) -> dict[str, Any]:
    """Everything `GET /certify` shows: the `certify` document, events as configured (no WISEflow call)."""
    async with SqliteUnitOfWork(ops.store).read() as unit:
        document = build(ops.settings, await unit.figures.stored())
    sections = []
    for section in dataclasses.fields(document):
        value = getattr(document, section.name)
        if isinstance(value, list):  # the endpoints: a table of their own
            rows, endpoints = [], [_endpoint(e) for e in value]
        else:
            rows = [
                (field_label(f.name), field_text(getattr(value, f.name))) for f in dataclasses.fields(value)
            ]
            endpoints = []
        sections.append({"title": TITLES[section.name], "rows": rows, "endpoints": endpoints})
    return {"now": clock_time(ops.clock.wall()), "sections": sections}


def _endpoint(e: EndpointUse) -> dict[str, str]:
    return {
        "request": f"{e.method} {e.path}",
        "purpose": e.purpose,
        "used_by": ", ".join(e.used_by),
        "observed": field_text(e.observed),
    }
