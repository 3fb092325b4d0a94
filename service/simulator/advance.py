"""How the world changes: grade changes, state changes, paper hand-ins and grades withdrawn, drawn from a
seeded RNG.

`apply_step` performs one `POST /_sim/advance` step and returns the changes made, each with the webhook
event it triggers and a fresh sequence number. A change that finds no eligible flow is skipped.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from service.simulator.world import (
    CONCLUDED,
    GRADES,
    MARKING,
    PARTICIPATION_STARTED,
    STATE_NAMES,
    Grade,
    Json,
    World,
)

STEP_KINDS: Final = ("grade_changes", "state_changes", "paper_submissions", "grade_withdrawals")
DEFAULT_STEP: Final[Mapping[str, int]] = {"grade_changes": 3, "state_changes": 1, "paper_submissions": 1}
# One request may not ask for more than this many changes of a kind: the answer lists every change.
MAX_PER_KIND: Final = 10_000


class AdvanceError(ValueError):
    """An advance body the simulator refuses; the message names the key."""


@dataclass(frozen=True, slots=True)
class Change:
    """One change of the world and the webhook event it produces."""

    event: str
    sequence: int
    flow_id: int
    participant_id: int | None
    detail: Json = field(default_factory=dict)

    def to_json(self) -> Json:
        """The change as `POST /_sim/advance` lists it."""
        return {
            "event": self.event,
            "sequence": self.sequence,
            "flowId": self.flow_id,
            "participantId": self.participant_id,
            **self.detail,
        }


def parse_step(body: Any) -> dict[str, int]:
    """Validate an advance body; an empty body is the default step. Raises `AdvanceError`."""
    if body is None or body == {}:
        return dict(DEFAULT_STEP)
    if not isinstance(body, dict):
        raise AdvanceError("the advance body must be a JSON object")
    unknown = sorted(set(body) - set(STEP_KINDS))
    if unknown:
        raise AdvanceError(f"unknown advance key(s): {', '.join(unknown)}; known: {', '.join(STEP_KINDS)}")
    step: dict[str, int] = {}
    for kind in STEP_KINDS:
        value = body.get(kind, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PER_KIND:
            raise AdvanceError(f"{kind} must be an integer between 0 and {MAX_PER_KIND}")
        step[kind] = value
    return step


def apply_step(world: World, rng: random.Random, step: Mapping[str, int], now: float) -> list[Change]:
    """Perform `step` on `world` at wall time `now`; returns the changes in the order they happened."""
    makers = {
        "state_changes": change_state,
        "grade_changes": change_grade,
        "paper_submissions": submit_paper,
        "grade_withdrawals": withdraw_grade,
    }
    changes: list[Change] = []
    # Withdrawals last: a step without any draws exactly what it drew before they existed.
    for kind in ("state_changes", "grade_changes", "paper_submissions", "grade_withdrawals"):
        for _ in range(step.get(kind, 0)):
            change = makers[kind](world, rng, int(now))
            if change is not None:
                changes.append(change)
    return changes


def _pick(world: World, rng: random.Random, states: range) -> int | None:
    """A random flow whose state is in `states`, or None."""
    eligible = [fid for fid, state in world.states.items() if state in states]
    return rng.choice(eligible) if eligible else None


def change_state(world: World, rng: random.Random, now: int) -> Change | None:
    """Move one flow to its next state; concluded flows stay concluded (archiving happens years later)."""
    flow_id = _pick(world, rng, range(0, CONCLUDED))
    if flow_id is None:
        return None
    world.states[flow_id] += 1
    state = STATE_NAMES[world.states[flow_id]]
    return Change("FLOW_STATE_UPDATED", world.next_sequence(), flow_id, None, {"state": state})


def change_grade(world: World, rng: random.Random, now: int) -> Change | None:
    """Give one participant of a flow in marking or concluded a new grade version."""
    flow_id = _pick(world, rng, range(MARKING, CONCLUDED + 1))
    if flow_id is None:
        return None
    index = rng.randrange(world.participants_per_flow)
    old = world.grade(flow_id, index)
    choices = [g for g in GRADES if old is None or g != old.grade]
    value = rng.choice(choices)
    world.grade_overrides[(flow_id, index)] = Grade(value, value, now)
    world.withdrawn.discard((flow_id, index))
    # A grade set during marking is an assessment; after conclusion it is the final grade.
    event = "ASSESSMENT" if world.states[flow_id] == MARKING else "FINAL_GRADE"
    pid = world.participant_id(flow_id, index)
    return Change(event, world.next_sequence(), flow_id, pid, {"grade": value})


def submit_paper(world: World, rng: random.Random, now: int) -> Change | None:
    """One participant of a running flow hands in: a PAPER_HANDED_IN participation event and a webhook."""
    flow_id = _pick(world, rng, range(PARTICIPATION_STARTED, PARTICIPATION_STARTED + 1))
    if flow_id is None:
        return None
    index = rng.randrange(world.participants_per_flow)
    pid = world.participant_id(flow_id, index)
    world.submissions[(flow_id, index)] = 800_000_000 + pid % 100_000_000
    world.events.append(
        {
            "timestamp": now,
            "type": "PAPER_HANDED_IN",
            "userId": world.user_id(flow_id, index),
            "flowId": flow_id,
            "payload": orjson.dumps({"participantId": pid, "handedInAt": now}).decode(),
        }
    )
    return Change("PAPER_SUBMITTED", world.next_sequence(), flow_id, pid)


def withdraw_grade(world: World, rng: random.Random, now: int) -> Change | None:
    """Withdraw one graded participant's grade in a flow in marking or concluded: its assessment disappears
    from `GET /flow/{id}/assessments`, and the grade event says so (the service must tell the SIS)."""
    flow_id = _pick(world, rng, range(MARKING, CONCLUDED + 1))
    if flow_id is None:
        return None
    graded = [i for i in range(world.participants_per_flow) if world.grade(flow_id, i) is not None]
    if not graded:
        return None
    index = rng.choice(graded)
    world.withdrawn.add((flow_id, index))
    event = "ASSESSMENT" if world.states[flow_id] == MARKING else "FINAL_GRADE"
    pid = world.participant_id(flow_id, index)
    return Change(event, world.next_sequence(), flow_id, pid, {"grade": None, "withdrawn": True})
