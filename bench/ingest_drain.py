"""The parts of `bench/ingest.py` that look inside the service: a py-spy profile and the drain figure."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import loadtools as lt


async def _store_burst(database: Path, bodies: list[bytes]) -> None:
    """Commit `bodies` (FINAL_GRADE events) to the inbox through the service's own ingest path."""
    from service.adapters.store import Store
    from service.adapters.store.inbox import Inbox
    from service.core.webhook_events import parse_event

    store = await Store.open(database)
    try:
        inbox = Inbox(store)
        now = time.time()
        for start in range(0, len(bodies), 1000):
            chunk = bodies[start : start + 1000]
            await asyncio.gather(*(inbox.record(parse_event(b), b, "pending", now) for b in chunk))
    finally:
        await store.close()


@dataclass(frozen=True)
class Drain:
    """How the worker dealt with a stored burst."""

    events: int
    seconds: float
    calls: int  # WISEflow API calls while draining (token requests not counted)
    refreshes: int  # of which flow refreshes the events asked for (GET .../assessments)


def drain(
    database: Path,
    api_url: str,
    log: Path,
    bodies: list[bytes],
    first: int,
    restart: Callable[[], None],
) -> Drain:
    """With the service stopped: store a burst, `restart` it, time until it processed all, count the calls."""
    asyncio.run(_store_burst(database, bodies))
    _sim("DELETE", api_url, "/_sim/journal")
    restart()
    started = started_at(log)
    wait_drained(database)
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        last = db.execute("SELECT MAX(processed_at) FROM inbox WHERE sequence >= ?", (first,)).fetchone()[0]
    journal = _sim("GET", api_url, "/_sim/journal")["requests"]  # cleared before the start
    calls = [r for r in journal if not r["path"].endswith("/oauth2/token")]
    refreshes = [r for r in calls if r["path"].endswith("/assessments")]
    return Drain(len(bodies), float(last) - started, len(calls), len(refreshes))


def pending(database: Path) -> int:
    """Inbox events still waiting for the worker."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as db:
        return int(db.execute("SELECT COUNT(*) FROM inbox WHERE status = 'pending'").fetchone()[0])


def wait_drained(database: Path, timeout: float = 300.0) -> float:
    """Seconds until no inbox event is pending (the worker caught up)."""
    started = time.monotonic()
    while pending(database) > 0:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the inbox did not drain within {timeout:g} s")
        time.sleep(0.05)
    return time.monotonic() - started


def started_at(log: Path) -> float:
    """When the service last started its loops: the time of its last `service.started` log line."""
    lines = [json.loads(x) for x in log.read_text().splitlines() if '"service.started"' in x]
    return datetime.fromisoformat(lines[-1]["time"]).timestamp()


def _sim(method: str, api_url: str, path: str) -> dict[str, list[dict[str, str]]]:
    root = api_url.removesuffix("/v1")
    request = urllib.request.Request(root + path, method=method)  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return json.load(answer)  # type: ignore[no-any-return]


def profile(pid: int, seconds: float, output: Path, load: Callable[[], lt.WrkResult]) -> str:
    """A py-spy profile of process `pid` while `load()` runs, as printable lines."""
    py_spy = lt.find_py_spy()
    if py_spy is None:
        return f"  (no profile: py-spy not found; {lt.PY_SPY_INSTALL})"
    spy = lt.start_profile(py_spy, pid, seconds, output)
    time.sleep(0.3)  # py-spy attaches; wrk (a little longer than the recording) runs past its end
    result = load()
    err, _ = spy.communicate(timeout=60)
    said = err.decode(errors="replace").strip()
    if spy.returncode != 0 or not output.exists():
        return f"  (no profile: py-spy failed: {said[-300:]})"
    samples, top, areas = lt.own_time(output.read_text())
    summary = next((x.split("py-spy> ", 1)[-1] for x in said.splitlines() if "Samples:" in x), "")
    lines = [
        f"  py-spy of the service under the same load ({result.rate:,.0f} req/s; {summary.strip()}), "
        f"{samples:,} busy samples; share by own time:"
    ]
    lines += [f"    {share:6.1%}  {name}" for name, share in top]
    lines.append("  by area: " + ", ".join(f"{name} {share:.0%}" for name, share in areas))
    return "\n".join(lines)
