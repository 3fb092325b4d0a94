"""The demo: the simulator and the service in one process, put through what the certification review asks.

Timeline (fractions of `duration`): the service starts and mirrors the world; grades change and signed
webhooks arrive (with duplicates, drops and out-of-order deliveries); tokens expire every few seconds; a 429
storm; a maintenance window; more grade changes; a final reconciliation run. The summary is measured, not
asserted: what the simulator saw (its journal), what the service did, and whether the mirror and the SIS
converged on the simulator's truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import aiohttp
from aiohttp import web

from service.app import SERVICE, Service, build_app
from service.core.ports import WEBHOOK_EVENTS
from service.settings import load_settings
from service.simulator import build_simulator_app, make_sim_config
from service.sync.until_done import sync_until_done

DEMO_SEED = 7
# After the timeline the demo waits for the state it needs (reconciled; webhooks settled; inbox and outbox
# empty), never for a fixed time: a heavily loaded machine is slow, not wrong. This bound only ends a demo
# that cannot converge (a stuck queue, a bug); it is minutes, far beyond what a slow machine needs, and an
# idle machine settles within seconds, so it never lengthens `make demo`.
SETTLE_TIMEOUT: Final = 300.0
# How often to look at the queues while they drain.
SETTLE_POLL: Final = 0.5


@dataclass(slots=True)
class DemoReport:
    """The demo's measured figures."""

    duration: float = 0.0
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    token_requests: int = 0
    missing_client_name: int = 0
    early_after_retry_after: int = 0
    webhooks: dict[str, Any] = field(default_factory=dict)
    inbox: dict[str, int] = field(default_factory=dict)
    sis_unique: int = 0
    sis_duplicates: int = 0
    mirror_grades: int = 0
    truth_grades: int = 0
    mismatched: int = 0
    undelivered: int = 0
    pending: dict[str, int] = field(default_factory=dict)  # what had not settled when the wait ended

    @property
    def converged(self) -> bool:
        """Everything settled, the mirror equals the truth, every grade reached the SIS, and none twice."""
        return not self.pending and self.mismatched == 0 and self.undelivered == 0 and self.sis_duplicates == 0


async def _start(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    server = site._server  # aiohttp exposes the bound port only through the server's sockets
    assert server is not None  # noqa: S101 - started just above
    port: int = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, port


async def run_demo(duration: float, out: TextIO = sys.stdout) -> DemoReport:
    """Run the demo for about `duration` seconds and return its report."""
    with tempfile.TemporaryDirectory(prefix="wiseflow-sync-demo-") as tmp:
        return await _run(duration, Path(tmp), out)


async def _run(duration: float, tmp: Path, out: TextIO) -> DemoReport:
    sim_config = make_sim_config(
        "calm",
        {},
        seed=DEMO_SEED,
        duplicate_rate=0.3,
        drop_rate=0.1,
        reorder=True,
        redelivery_interval=2.0,
        token_ttl=max(5.0, duration / 6),
    )
    sim_runner, sim_port = await _start(build_simulator_app(sim_config))
    root = f"http://127.0.0.1:{sim_port}"
    settings = load_settings(
        {
            "WISEFLOW_API_URL": root + "/v1",
            "WISEFLOW_CLIENT_ID": sim_config.client_id,
            "WISEFLOW_CLIENT_SECRET": sim_config.client_secret,
            "WISEFLOW_CLIENT_NAME": "wiseflow-sync-demo",
            "WISEFLOW_WEBHOOK_SECRET": sim_config.webhook_secret,
            "SYNC_DATABASE": str(tmp / "demo.sqlite3"),
            "SYNC_SINK_URL": root + "/_sis/grades",
            "SYNC_POLL_INTERVAL": str(max(5.0, duration / 4)),
            "SYNC_RETRY_AFTER_MAX": "10",
        }
    )
    app = build_app(settings, command="demo")
    runner, service_port = await _start(app)
    service = app[SERVICE]
    started = time.monotonic()
    # Up until the summary is printed: a reviewer watches the faults pass on the operator console.
    console = f"http://127.0.0.1:{service_port}/"
    print(f"[  0.0s] operator console: {console} (certification: {console}certify)", file=out, flush=True)
    try:
        # Subscribe the way an operator does (`webhooks ensure`): through the API, with our secret.
        await service.client.create_webhook(
            {
                "title": settings.client_name,
                "url": f"http://127.0.0.1:{service_port}/webhooks/wiseflow",
                "active": True,
                "events": list(WEBHOOK_EVENTS),
                "secret": sim_config.webhook_secret,
            }
        )
        async with aiohttp.ClientSession(root) as sim:
            await _script(sim, duration, started, out)
            pending = await _settle(sim, service, started, out)
            report = await _report(sim, service)
            report.pending = pending
    finally:
        await runner.cleanup()
        await sim_runner.cleanup()
    report.duration = time.monotonic() - started
    return report


async def _script(sim: aiohttp.ClientSession, duration: float, started: float, out: TextIO) -> None:
    """The timeline of faults and changes."""
    steps: list[tuple[float, str, dict[str, Any] | None, str]] = [
        (
            0.15,
            "/_sim/advance",
            {"grade_changes": 6, "state_changes": 2, "paper_submissions": 2},
            "grades change",
        ),
        (0.30, "/_sim/scenario", {"storm_429": {"seconds": 3, "retry_after": 2}}, "429 storm"),
        (0.40, "/_sim/advance", {"grade_changes": 4}, "grades change during the storm"),
        (0.50, "/_sim/scenario", {"maintenance": {"seconds": 5, "retry_after": 3}}, "maintenance window"),
        (0.55, "/_sim/advance", {"grade_changes": 4}, "grades change during maintenance"),
        (0.70, "/_sim/advance", {"grade_changes": 6, "state_changes": 1}, "grades change"),
    ]
    for at, path, body, label in steps:
        await asyncio.sleep(max(0.0, started + at * duration - time.monotonic()))
        async with sim.post(path, json=body or {}) as response:
            await response.read()
        print(f"[{time.monotonic() - started:5.1f}s] {label}", file=out, flush=True)
    await asyncio.sleep(max(0.0, started + 0.85 * duration - time.monotonic()))


async def _settle(sim: aiohttp.ClientSession, service: Service, started: float, out: TextIO) -> dict[str, int]:
    """Reconcile, then wait until nothing is pending anywhere; return what still was at `SETTLE_TIMEOUT`."""
    print(f"[{time.monotonic() - started:5.1f}s] reconciliation run (every live flow)", file=out, flush=True)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    # Webhooks were dropped on purpose: a concluded flow's late grade change is found only by reconciling.
    outcome = await sync_until_done(service.runner.run, full=True, max_wait=SETTLE_TIMEOUT)
    while True:
        pending = await _pending(sim, service)
        if outcome.outcome != "ok":
            pending["reconciliation"] = 1
        # A reconciliation that failed or paused out will not finish by waiting longer.
        if not pending or outcome.outcome != "ok" or time.monotonic() >= deadline:
            break
        service.signals.stored()  # look again now, not at the next idle interval
        service.signals.queued(1)
        await asyncio.sleep(SETTLE_POLL)
    if pending:
        elapsed = time.monotonic() - started
        print(f"[{elapsed:5.1f}s] gave up waiting; still pending: {pending}", file=out, flush=True)
    return pending


async def _pending(sim: aiohttp.ClientSession, service: Service) -> dict[str, int]:
    """What has not settled yet: the simulator's webhook deliveries, the inbox, the outbox to the SIS."""
    async with sim.get("/_sim/deliveries") as response:
        outstanding = int((await response.json())["outstanding"])
    async with service.uow.read() as unit:
        inbox, outbox = await unit.inbox.counts(), await unit.outbox.counts()
    counts = {"webhooks": outstanding, "inbox": inbox.get("pending", 0), "outbox": outbox.get("pending", 0)}
    return {name: n for name, n in counts.items() if n}


async def _report(sim: aiohttp.ClientSession, service: Service) -> DemoReport:
    report = DemoReport()
    async with sim.get("/_sim/journal") as response:
        journal = (await response.json())["requests"]
    report.requests = len(journal)
    report.by_status = Counter(int(r["status"]) for r in journal)
    report.token_requests = sum(1 for r in journal if r["path"].endswith("/oauth2/token"))
    report.missing_client_name = sum(
        1 for r in journal if not {k.lower() for k in r["headers"]} & {"x-client-name"}
    )
    report.webhooks = service.figures.snapshot()
    async with service.uow.read() as unit:
        report.inbox = await unit.inbox.counts()
        report.undelivered = (await unit.outbox.counts()).get("pending", 0)
    async with sim.get("/_sis/grades") as response:
        sis = await response.json()
    report.sis_unique, report.sis_duplicates = int(sis["unique"]), int(sis["duplicates"])
    async with sim.get("/_sim/truth") as response:
        truth = await response.json()
    expected = {
        (int(f["flow"]["id"]), int(a["participantId"])): (a.get("grade"), a.get("adminGrade"), a.get("date"))
        for f in truth["flows"]
        if f["state"] != "ARCHIVED"
        for a in f["assessments"]
    }
    archived = {int(f["flow"]["id"]) for f in truth["flows"] if f["state"] == "ARCHIVED"}
    async with service.uow.read() as unit:
        actual = {
            (g.flow_id, g.participant_id): (g.grade, g.admin_grade, g.date)
            async for g in unit.grades.stream()
            if g.flow_id not in archived
        }
    report.truth_grades, report.mirror_grades = len(expected), len(actual)
    report.mismatched = sum(1 for key, value in expected.items() if actual.get(key) != value)
    return report


def print_report(report: DemoReport, out: TextIO = sys.stdout) -> None:
    """The summary table."""
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(report.by_status.items()))
    lines = [
        "",
        f"wiseflow-sync demo: {report.duration:.0f}s against the embedded WISEflow simulator",
        f"  API requests seen by WISEflow   {report.requests} ({statuses})",
        f"  token requests (OAuth renewals) {report.token_requests}",
        f"  requests without X-Client-Name  {report.missing_client_name}",
        f"  webhooks                        {_figures(report.webhooks)}",
        f"  inbox                           {dict(sorted(report.inbox.items()))}",
        f"  grades mirrored / in WISEflow   {report.mirror_grades} / {report.truth_grades}"
        f" ({report.mismatched} differ)",
        f"  grades delivered to the SIS     {report.sis_unique} ({report.sis_duplicates} duplicates,"
        f" {report.undelivered} still queued)",
        f"  converged                       {'yes' if report.converged else 'NO'}",
    ]
    print("\n".join(lines), file=out, flush=True)


def _figures(figures: dict[str, Any]) -> str:
    keys = ("received", "stored", "duplicates", "rejected_total", "unknown")
    return ", ".join(f"{k} {figures[k]}" for k in keys if k in figures)


def main(duration: float) -> int:
    """Run the demo and print its report; exit 0 when it converged."""
    report = asyncio.run(run_demo(duration))
    with contextlib.suppress(BrokenPipeError):
        print_report(report)
    return 0 if report.converged else 1
