"""The blind-spot fallback: notice when webhooks may have been lost, and catch up on the flows concerned.

`CatchUp.start()` runs once at startup (a downtime longer than WISEflow's redelivery horizon), then
`run()` writes a heartbeat and checks for silence every `interval` seconds. A catch-up refreshes each flow
active during the gap once (its state, then its participants with their grades) through the same flow
refresh the inbox worker calls, and wakes the deliverer for the grades it queued; when WISEflow cannot be
used (`core.failures`) it is not recorded, so the next check tries again. The polling loops remain the
general safety net; this closes the gap at once.

Markers (`unit.checkpoints`, as time stamps): ``webhooks:heartbeat``, ``webhooks:last_catchup``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from service.core.blindness import REDELIVERY_HORIZON, BlindGap, downtime_gap, flows_to_catch_up, silence_gap
from service.core.clock import Clock
from service.core.failures import BAD_DATA, Verdict, classify, describe
from service.core.store_ports import UnitOfWork
from service.errors import ServiceError
from service.sync.inbox_worker import FlowRefresher
from service.sync.signals import Signals

log = logging.getLogger("service.catchup")

HEARTBEAT: Final = "webhooks:heartbeat"
LAST_CATCHUP: Final = "webhooks:last_catchup"


class CatchUp:
    """Detects blind gaps (downtime, silence) and refreshes the flows active in them."""

    def __init__(
        self,
        uow: UnitOfWork,
        refresher: FlowRefresher,
        signals: Signals,
        clock: Clock,
        *,
        horizon: float = REDELIVERY_HORIZON,
        interval: float = 60.0,
    ) -> None:
        self.uow = uow
        self.refresher = refresher
        self.signals = signals
        self.clock = clock
        self.horizon = horizon
        self.interval = interval
        self.started_at = clock.wall()
        self.catchups = 0  # how many catch-ups ran (a figure for metrics and the certification report)
        self._pending_downtime: BlindGap | None = None

    async def start(self) -> BlindGap | None:
        """At startup: detect a downtime gap, write the first heartbeat, and catch up if needed."""
        async with self.uow.transaction() as unit:
            previous = _time(await unit.checkpoints.get(HEARTBEAT))
            last_catchup = _time(await unit.checkpoints.get(LAST_CATCHUP))
            self.started_at = self.clock.wall()
            await unit.checkpoints.set(HEARTBEAT, self.started_at, self.started_at)
        gap = downtime_gap(previous, self.started_at, self.horizon)
        if gap is not None and (last_catchup is None or last_catchup < gap.end):
            self._pending_downtime = gap
            await self._catch_up(gap)
        return gap

    async def check(self) -> BlindGap | None:
        """Heartbeat, then catch up on a pending downtime gap or a silence longer than the horizon."""
        now = self.clock.wall()
        async with self.uow.transaction() as unit:
            await unit.checkpoints.set(HEARTBEAT, now, now)
            last_delivery_at = await unit.inbox.last_delivery_at()
            last_catchup_at = _time(await unit.checkpoints.get(LAST_CATCHUP))
        if self._pending_downtime is not None:
            gap: BlindGap | None = self._pending_downtime
        else:
            gap = silence_gap(
                now,
                started_at=self.started_at,
                last_delivery_at=last_delivery_at,
                last_catchup_at=last_catchup_at,
                horizon=self.horizon,
            )
        if gap is not None:
            await self._catch_up(gap)
        return gap

    async def run(self) -> None:
        """`check()` every `interval` seconds until cancelled; a failed check is logged and retried."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception as exc:  # the markers' database: the next check tries again
                if classify(exc) is Verdict.BLAME_ITEM:
                    raise  # a bug, not a passing failure: the loop guard logs it with its traceback
                log.warning("catch-up check failed", extra={"event": "catchup.failed", "error": describe(exc)})

    async def _catch_up(self, gap: BlindGap) -> None:
        async with self.uow.read() as unit:
            live = await unit.flows.live()
        flows = flows_to_catch_up(live, gap, self.horizon)
        if flows:
            context = {"cause": gap.cause, "gap_seconds": round(gap.end - gap.start), "flows": len(flows)}
            log.warning("webhook blind spot: catching up", extra={"event": "catchup.start", **context})
        for flow_id in flows:
            try:
                await self.refresher.refresh_flow(flow_id)
                # With its grades (one fetch of each); what it queued goes to the SIS at once.
                self.signals.queued(await self.refresher.refresh_grades(flow_id, with_participants=True))
            except (ServiceError, *BAD_DATA) as exc:
                context = {"flow_id": flow_id, "error": describe(exc)}
                if (
                    classify(exc) is Verdict.BLAME_ITEM
                ):  # this flow's problem: the poller retries it on its plan
                    log.warning("catch-up skipped a flow", extra={"event": "catchup.flow_failed", **context})
                    continue
                # WISEflow cannot be used now, or our database failed: the gap stays open for the next check.
                log.warning(
                    "catch-up interrupted; will retry", extra={"event": "catchup.interrupted", **context}
                )
                return
        async with self.uow.transaction() as unit:
            await unit.checkpoints.set(LAST_CATCHUP, self.clock.wall(), self.clock.wall())
        self._pending_downtime = None
        if flows:
            self.catchups += 1
            log.info("catch-up done", extra={"event": "catchup.done", "flows": len(flows)})


def _time(marker: Any) -> float | None:
    """A marker as stored (a JSON number, or a float an earlier version wrote with repr): Unix seconds."""
    return None if marker is None else float(marker)
