"""One flow's refresh: fetch its state, participants and grades from WISEflow and commit them in order.

Used by a sync run (a planned refresh, which also schedules the next one) and, directly, by the inbox
worker and catch-up (a targeted refresh). A grades refresh returns how many outbox rows it queued, so its
caller can wake the deliverer (`Signals.queued`).

Any number of loops and processes may refresh the same flow at once, so each refresh is guarded at
commit: it reads the flow's refresh version before it starts fetching and commits only if that version is
unchanged (checked and bumped in the same transaction), so every commit
holds data fetched after the one it replaces: the mirror never moves backwards and an older grade is never
queued again. Losing only says another refresh committed since ours began, not that it began later, so
the loser fetches again rather than drop what may be the newer answer (and mark done the webhook that
asked for it). A flow's state (`GET /flow/{id}`, and discovery) is guarded the same way by the state
clock: read before the fetch, checked and advanced at commit. A sync run refreshes through its own view
(`counting(tally, counts)`): its requests count into the run's tally, what each commit added, changed and
removed into the run's counts; a webhook's refresh, through the plain one, counts for no run.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

from service.core import planner
from service.core.clock import Clock
from service.core.failures import Verdict, classify
from service.core.planner import FlowPlan, PlanPolicy
from service.core.ports import WiseflowApi
from service.core.records import Flow, GradeVersion, Participant, changed_grades, withdrawn_grades
from service.core.request_tally import RequestTally
from service.core.run_record import MirrorCounts
from service.core.store_ports import UnitOfWork
from service.errors import ApiError
from service.sync.keyed_locks import KeyedLocks

log = logging.getLogger("service.sync")

RACE_ATTEMPTS = 3  # fetches of a flow (state, or grades) before a refresh that keeps losing the race gives up


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What one grades refresh read and wrote."""

    participants: int = 0  # participants fetched
    grades: int = 0  # assessments fetched
    changed: int = 0  # grade versions that differ from the mirror's
    queued: int = 0  # outbox rows added (graded versions not queued before, and withdrawals)
    withdrawn: int = 0  # of those, withdrawals: grades the SIS received that WISEflow no longer has


class FlowRefresh:
    """Refreshes single flows, for a run (`fetch_and_store`) and for webhooks and catch-up (the others)."""

    def __init__(
        self,
        api: WiseflowApi,
        uow: UnitOfWork,
        clock: Clock,
        rng: planner.Random,
        policy: PlanPolicy,
    ) -> None:
        self._api = api
        self._uow = uow
        self._clock = clock
        self._rng = rng
        self._policy = policy
        # Within the process one fetch-and-write per flow at a time (no wasted fetches); across processes
        # the version check at commit keeps the order. A flow's lock lives only while it is in use.
        self.flow_locks = KeyedLocks()
        self._counts: MirrorCounts | None = None  # a sync run's view counts its committed writes here

    def counting(self, tally: RequestTally, counts: MirrorCounts) -> FlowRefresh:
        """This refresh as a sync run's: its requests counted into `tally`, what its commits added, changed
        and removed into `counts`; the same per-flow locks."""
        view = copy.copy(self)
        view._api = self._api.counting(tally)
        view._counts = counts
        return view

    def _committed(self, counts: MirrorCounts) -> None:
        """A write committed: it counts for the run whose view this is (none for a webhook's refresh)."""
        if self._counts is not None:
            self._counts.add(counts)

    async def refresh_flow(self, flow_id: int) -> None:
        """Fetch the flow's state and dates, store them, and re-plan it (a state change makes it due now).

        A flow WISEflow answers 404 for is gone: it leaves the mirror (a webhook for it is then done).
        """
        # Losing the race only says some other fetch committed since ours began, not that it began later
        # (its data may be older than ours): fetch again, so the caller's refresh ends with a fetch begun
        # after it was asked for. Another loss in a row is as rare as three writers on one flow at once.
        for _ in range(RACE_ATTEMPTS):
            if await self._refresh_state(flow_id):
                return
        log.warning(
            "flow state refresh lost the race every time: left to the next run",
            extra={"event": "sync.refresh_superseded", "flow_id": flow_id},
        )

    async def _refresh_state(self, flow_id: int) -> bool:
        """One fetch and guarded write of the flow's state; False when another commit came first."""
        clock = await self._state_clock()  # before the fetch begins
        flow = await self.fetch_flow(flow_id, clock)
        if flow is None:
            return True
        now = self._clock.wall()
        async with self._uow.transaction() as unit:
            previous, plan = await unit.flows.get(flow_id) or (None, None)
            saved = await unit.flows.save(flow, now, clock=clock)
            if saved is None:
                return False
            new_plan = planner.plan_after_discovery(previous, flow, plan, now, self._policy)
            await unit.flows.save_plans({flow_id: new_plan})
        self._committed(MirrorCounts(flows=saved))
        return True

    async def fetch_flow(self, flow_id: int, clock: int) -> Flow | None:
        """`GET /flow/{id}`, begun after `clock` was read; on a 404 the flow leaves the mirror (None)."""
        try:
            return Flow.from_basic(await self._api.get_flow(flow_id))
        except ApiError as exc:
            if classify(exc) is Verdict.STOP_AND_WAIT or exc.status != 404:
                raise
        await self._drop(flow_id, clock)
        return None

    async def is_gone(self, flow_id: int) -> bool:
        """After a 404 on a flow's participants or grades: does `GET /flow/{id}` confirm it (and drop it)?"""
        return await self.fetch_flow(flow_id, await self._state_clock()) is None

    async def _state_clock(self) -> int:
        """The committed state clock, read (without the writer lock) before a fetch of a flow's state."""
        async with self._uow.read() as unit:
            return await unit.flows.state_clock()

    async def _drop(self, flow_id: int, clock: int) -> None:
        """A flow WISEflow no longer has: the mirror follows (its queued grades are still delivered)."""
        async with self._uow.transaction() as unit:
            removed = await unit.flows.delete(flow_id, clock)
        if removed is not None:
            self._committed(removed)
            log.warning(
                "flow not found: removed from the mirror", extra={"event": "sync.flow_gone", "flow_id": flow_id}
            )

    async def refresh_grades(self, flow_id: int, *, with_participants: bool) -> int:
        """Fetch the flow's grades (`with_participants`: its participants first) and store new versions with
        their outbox rows now; returns the rows queued. An unknown flow is mirrored first."""
        async with self._uow.read() as unit:
            known = await unit.flows.get(flow_id)
        if known is None:
            await self.refresh_flow(flow_id)  # an unknown flow: mirror it first
            async with self._uow.read() as unit:
                known = await unit.flows.get(flow_id)
            if known is None:
                return 0
        try:
            return (await self.fetch_and_store(known[0], None, with_participants=with_participants)).queued
        except ApiError as exc:
            if classify(exc) is Verdict.STOP_AND_WAIT or exc.status != 404 or not await self.is_gone(flow_id):
                raise
        return 0

    async def fetch_and_store(self, flow: Flow, plan: FlowPlan | None, *, with_participants: bool) -> Refreshed:
        """Fetch and store one flow's grades (and participants); with a `plan` (a run's refresh of a due
        flow), its next due time too."""
        async with self.flow_locks.hold(flow.flow_id):
            for _ in range(RACE_ATTEMPTS):  # a lost race fetches again, as in `refresh_flow`
                refreshed, committed = await self._refresh_once(flow, plan, with_participants=with_participants)
                if committed:
                    return refreshed
            log.warning(
                "flow refresh lost the race every time: left to the next run",
                extra={"event": "sync.refresh_superseded", "flow_id": flow.flow_id},
            )
            return refreshed

    async def _refresh_once(
        self, flow: Flow, plan: FlowPlan | None, *, with_participants: bool
    ) -> tuple[Refreshed, bool]:
        """One fetch and guarded write; what it did, and False when another refresh committed first."""
        # Read before the fetch, in one snapshot: the claim below succeeds only if no refresh of the flow
        # (the only writer of its grades) committed since, so these keys are still the stored ones then,
        # and the write transaction need not read them while the receiver's group commit waits for it.
        async with self._uow.read() as unit:
            version = await unit.flows.refresh_version(flow.flow_id)  # before the fetch begins
            stored = await unit.grades.keys(flow.flow_id)
        participants: list[Participant] = []
        if with_participants:
            async for item in self._api.iter_participants(flow.flow_id):
                participants.append(Participant.from_api(flow.flow_id, item))
        versions = [
            GradeVersion.from_assessment(flow.flow_id, a) for a in await self._api.get_assessments(flow.flow_id)
        ]
        now = self._clock.wall()
        async with self._uow.transaction() as unit:
            if not await unit.flows.claim_refresh(flow.flow_id, version):
                return Refreshed(len(participants), len(versions)), False
            counts = MirrorCounts()
            if with_participants:
                counts.participants = await unit.grades.replace_participants(flow.flow_id, participants, now)
            changed = changed_grades(stored, versions)
            counts.grades = await unit.grades.write(changed, now)
            listed = {v.participant_id for v in versions}
            if stored.keys() - listed:  # grades WISEflow no longer lists
                counts.grades += await unit.grades.remove_except(flow.flow_id, listed)
            # Always, sink or not: a grade mirrored without an outbox row would never be sent later, and a
            # grade WISEflow withdrew leaves the mirror only with its withdrawal queued for the SIS.
            queued = await unit.outbox.enqueue([v for v in changed if v.is_graded], now)
            withdrawn = await unit.outbox.enqueue(withdrawn_grades(flow.flow_id, stored, versions), now)
            counts.queued = queued + withdrawn
            if plan is not None:  # a planned refresh: schedule the next one
                next_plan = planner.plan_after_poll(flow, now, self._rng, self._policy)
                await unit.flows.save_plans({flow.flow_id: next_plan})
        self._committed(counts)
        if withdrawn:
            log.warning(
                "grades withdrawn in WISEflow: their withdrawal is queued for the SIS",
                extra={"event": "sync.grades_withdrawn", "flow_id": flow.flow_id, "withdrawn": withdrawn},
            )
        return Refreshed(len(participants), len(versions), len(changed), queued + withdrawn, withdrawn), True
